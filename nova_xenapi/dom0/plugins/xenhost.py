#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: host facts Nova asks for (uptime), and an NMI for a guest.

XAPI's ``VM.send_trigger`` answers NOT_IMPLEMENTED (xapi_vm.ml), so the NMI
of Nova's ``trigger_crash_dump`` is sent from dom0 with ``xl trigger <domid>
nmi``, as an operator would.
"""

import subprocess

import dom0_pluginlib
import XenAPIPlugin


def host_uptime(session, args):
    """The output of ``uptime``, as the old driver reported it."""
    try:
        out = subprocess.check_output(["uptime"], stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError) as e:
        raise XenAPIPlugin.Failure("UPTIME_FAILED", [str(e)]) from None
    return out.decode("utf-8", "replace").strip()


def trigger_nmi(session, args):
    """Send the domain ``dom_id`` a non-maskable interrupt."""
    dom_id = dom0_pluginlib.int_arg(args, "dom_id", 1, 2 ** 31 - 1)
    try:
        subprocess.check_output(["xl", "trigger", str(dom_id), "nmi"], stderr=subprocess.STDOUT)
    except subprocess.CalledProcessError as e:
        out = e.output.decode("utf-8", "replace").strip()[-400:]
        raise XenAPIPlugin.Failure("NMI_FAILED", [str(dom_id), out]) from None
    except OSError as e:
        raise XenAPIPlugin.Failure("NMI_FAILED", [str(dom_id), str(e)]) from None
    return "sent"


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"host_uptime": host_uptime, "trigger_nmi": trigger_nmi})
