"""Runs dom0 plugins the way xapi's ``host.call_plugin`` does.

The plugin is an executable directly inside the host's simulated
``/etc/xapi.d/plugins/``.  It gets the call as an XML-RPC ``methodCall`` in
argv[1] (params: session ref, struct of string args) and prints an XML-RPC
response; its ``Failure`` passes through, a crash becomes
``XENAPI_PLUGIN_FAILURE``.  The process runs with its working directory and
``XAPISIM_DOM0_ROOT`` set to the host's dom0 root, so plugins written for a
real dom0 find their files under it when they honour that variable.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

from .errors import XapiError
from .wire import xmlrpc as wire

PLUGIN_TIMEOUT = 3600.0


def plugin_path(dom0_root: Path, name: str) -> Path:
    if not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise XapiError("XENAPI_MISSING_PLUGIN", name)
    path = dom0_root / "etc/xapi.d/plugins" / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise XapiError("XENAPI_MISSING_PLUGIN", name)
    return path


def dom0_env(dom0_root: Path) -> dict[str, str]:
    """The environment of a process "in" a simulated dom0: its tools and its python3 first on
    PATH, its Python libraries (XenAPIPlugin, ...) importable, and XAPISIM_DOM0_ROOT naming
    it."""
    env = dict(os.environ)
    plugins_dir = str(dom0_root / "etc/xapi.d/plugins")
    site = str(dom0_root / "usr/lib/python3/site-packages")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (plugins_dir, site, env.get("PYTHONPATH", "")) if p)
    env["XAPISIM_DOM0_ROOT"] = str(dom0_root)
    env["PATH"] = os.pathsep.join([str(dom0_root / "usr/sbin"), str(dom0_root / "usr/bin"),
                                   str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_plugin(dom0_root: Path, session: str, name: str, fn: str, args: dict[str, str],
               env_extra: dict[str, str] | None = None) -> str:
    path = plugin_path(dom0_root, name)
    request = wire.call(fn, [session, {str(k): str(v) for k, v in args.items()}]).decode()
    env = dom0_env(dom0_root)
    env.update(env_extra or {})
    try:
        proc = subprocess.run([str(path), request], capture_output=True, env=env,
                              cwd=dom0_root, timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "fault", "timeout", name) from None
    except OSError as e:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "fault", str(e.errno), e.strerror) from None
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise XapiError("XENAPI_PLUGIN_FAILURE", "signal", sig, err)
    if proc.returncode != 0:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", out, err)
    try:
        (result,), _ = xmlrpc.client.loads(proc.stdout)
    except Exception as e:  # noqa: BLE001 - any parse failure is reported the same way
        raise XapiError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", out, str(e)) \
            from None
    if isinstance(result, dict) and result.get("Status") == "Failure":
        desc = [str(x) for x in result.get("ErrorDescription", [])] or ["XENAPI_PLUGIN_FAILURE"]
        raise XapiError(desc[0], *desc[1:])
    if isinstance(result, dict) and result.get("Status") == "Success":
        return str(result.get("Value", ""))
    return str(result)
