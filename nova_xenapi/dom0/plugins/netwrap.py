#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: run one networking command for neutron's OVS agent (xenapi-root-helper).

Only commands on the allow-list run, with argv passed as a list (never a
shell); ``ip`` is further limited to reading and changing links, addresses
and routes, because ``ip netns exec`` or ``ip -batch`` would run anything.
The answer is JSON: returncode, out, err.
"""

import json
import subprocess

import dom0_pluginlib
import XenAPIPlugin

ALLOWED = ("ovs-vsctl", "ovs-ofctl", "ip")
IP_OBJECTS = ("link", "addr", "address", "route", "neigh", "-o", "-d", "-4", "-6", "-s")
MAX_ARGS = 256
MAX_ARG_LEN = 4096
TIMEOUT = 60


def _command(args):
    raw = dom0_pluginlib.arg(args, "cmd")
    try:
        argv = json.loads(raw)
    except ValueError:
        dom0_pluginlib.invalid("cmd", raw, "not JSON")
    if not isinstance(argv, list) or not argv or len(argv) > MAX_ARGS:
        dom0_pluginlib.invalid("cmd", raw, "not a non-empty list")
    for a in argv:
        if not isinstance(a, str) or len(a) > MAX_ARG_LEN or "\x00" in a or "\n" in a:
            dom0_pluginlib.invalid("cmd", raw, "arguments must be single-line strings")
    if argv[0] not in ALLOWED:
        raise XenAPIPlugin.Failure("COMMAND_NOT_ALLOWED", [argv[0]])
    if argv[0] == "ip":
        words = [a for a in argv[1:] if not a.startswith("-")]
        if not words or words[0] not in IP_OBJECTS or any(a in ("-b", "-batch", "-force") for a in argv):
            raise XenAPIPlugin.Failure("COMMAND_NOT_ALLOWED", [" ".join(argv[:3])])
    return argv


def run_command(session, args):
    argv = _command(args)
    stdin = args.get("cmd_input")
    try:
        proc = subprocess.run(argv, input=stdin.encode() if stdin else None,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    except OSError as e:
        return json.dumps({"returncode": 127, "out": "", "err": str(e)})
    except subprocess.TimeoutExpired:
        return json.dumps({"returncode": 124, "out": "", "err": "timed out"})
    return json.dumps({"returncode": proc.returncode,
                       "out": proc.stdout.decode("utf-8", "replace"),
                       "err": proc.stderr.decode("utf-8", "replace")})


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"run_command": run_command})
