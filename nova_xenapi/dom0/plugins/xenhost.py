#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: host facts Nova asks for (uptime)."""

import subprocess

import XenAPIPlugin


def host_uptime(session, args):
    """The output of ``uptime``, as the old driver reported it."""
    try:
        out = subprocess.check_output(["uptime"], stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError) as e:
        raise XenAPIPlugin.Failure("UPTIME_FAILED", [str(e)]) from None
    return out.decode("utf-8", "replace").strip()


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"host_uptime": host_uptime})
