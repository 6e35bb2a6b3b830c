"""``xenapi-root-helper``: neutron's OVS agent runs its root commands in dom0 with this.

Configured as ``[agent] root_helper = xenapi-root-helper --config-file
<neutron agent config>`` (xenapi-bootstrap writes it).  The command after the
options is sent to dom0's ``netwrap.py`` plugin through XAPI, using the
``[xenapi]`` connection options of that file; its output and exit status are
passed through.  A command outside the plugin's allow-list exits 99, the
status rootwrap uses for an unauthorized command.
"""

from __future__ import annotations

import json
import sys

from oslo_config import cfg

from nova_xenapi import transport
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession

UNAUTHORIZED = 99
FAILED = 96

OPTS = [
    cfg.URIOpt("connection_url", schemes=["http", "https"], help="XAPI URL of dom0's host"),
    cfg.StrOpt("connection_username", default="root"),
    cfg.StrOpt("connection_password", secret=True),
    cfg.StrOpt("ca_file"),
    cfg.StrOpt("certificate_thumbprint"),
    cfg.BoolOpt("verify_ssl", default=True),
]


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    files = []
    while len(argv) >= 2 and argv[0] == "--config-file":
        files.append(argv[1])
        argv = argv[2:]
    return files, argv


def main(argv: list[str] | None = None, stdin=None, stdout=None, stderr=None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    files, command = _split(list(sys.argv[1:] if argv is None else argv))
    if not command:
        stderr.write("usage: xenapi-root-helper --config-file FILE COMMAND [ARGS...]\n")
        return FAILED
    conf = cfg.ConfigOpts()
    conf.register_opts(OPTS, group="xenapi")
    conf([a for f in files for a in ("--config-file", f)],
         project="neutron", default_config_files=[])
    x = conf.xenapi
    if not x.connection_url or x.connection_password is None:
        stderr.write("xenapi-root-helper: [xenapi] connection_url and connection_password are needed\n")
        return FAILED
    data = "" if stdin.isatty() else stdin.read()
    try:
        session = XenAPISession(x.connection_url, x.connection_username, x.connection_password,
                                concurrent=1, originator="xenapi-root-helper",
                                tls=transport.TLSPolicy(verify=x.verify_ssl, ca_file=x.ca_file,
                                                        thumbprint=x.certificate_thumbprint))
        try:
            raw = session.call_plugin("netwrap.py", "run_command",
                                      {"cmd": json.dumps(command), "cmd_input": data})
        finally:
            session.close()
    except XenAPIError as exc:
        stderr.write(f"xenapi-root-helper: {exc}\n")
        return UNAUTHORIZED if exc.code == "COMMAND_NOT_ALLOWED" else FAILED
    except HostConnectionError as exc:
        stderr.write(f"xenapi-root-helper: {exc}\n")
        return FAILED
    result = json.loads(raw)
    stdout.write(result["out"])
    stderr.write(result["err"])
    return int(result["returncode"])


if __name__ == "__main__":
    sys.exit(main())
