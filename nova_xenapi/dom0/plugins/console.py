#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: the tail of a guest's console log, zlib-compressed and base64-encoded.

Reads ``/var/log/xen/guest/console.<dom_id>`` (XenServer's guest console
logs); ``dom_id`` must be a domain number, so no other file can be named.
"""

import base64
import zlib

import dom0_pluginlib
import XenAPIPlugin

CONSOLE_LOG_DIR = "/var/log/xen/guest"
MAX_CONSOLE_BYTES = 102400


def get_console_log(session, args):
    dom_id = dom0_pluginlib.int_arg(args, "dom_id", 1, 2 ** 31 - 1)
    path = dom0_pluginlib.path_under(CONSOLE_LOG_DIR, f"console.{dom_id}")
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - MAX_CONSOLE_BYTES))
            data = f.read()
    except OSError:
        raise XenAPIPlugin.Failure("NO_CONSOLE_LOG", [str(dom_id)]) from None
    return base64.b64encode(zlib.compress(data)).decode("ascii")


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"get_console_log": get_console_log})
