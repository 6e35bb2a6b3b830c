#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: kernels and ramdisks of AMI images in /boot/guest.

``copy_vdi`` copies the first ``length`` bytes of a disk plugged into dom0
(``/dev/<dev>``) to ``/boot/guest/<filename>``, refusing more than
``max_size`` bytes; ``remove_kernel_ramdisk`` deletes such files.  Device and
file names are checked against strict patterns and every path must stay
under its directory.
"""

import os
import re

import dom0_pluginlib
import XenAPIPlugin

KERNEL_DIR = "/boot/guest"
_FILE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
CHUNK = 1 << 20


def _name(args, key, pattern):
    value = dom0_pluginlib.arg(args, key)
    if not pattern.match(value):
        dom0_pluginlib.invalid(key, value, "not an accepted name")
    return value


def copy_vdi(session, args):
    dev, source = dom0_pluginlib.device(args)
    filename = _name(args, "filename", _FILE)
    max_size = dom0_pluginlib.int_arg(args, "max_size", 0, 2 ** 40)
    length = dom0_pluginlib.int_arg(args, "length", 0, 2 ** 40)
    if length > max_size:
        raise XenAPIPlugin.Failure("KERNEL_TOO_LARGE", [str(length), str(max_size)])
    target = dom0_pluginlib.path_under(KERNEL_DIR, filename)
    dom0_pluginlib.present(dev, source)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    left = length
    with open(source, "rb") as src, open(target + ".part", "wb") as dst:
        while left:
            data = src.read(min(CHUNK, left))
            if not data:
                raise XenAPIPlugin.Failure("KERNEL_SHORT_READ", [dev, str(length - left)])
            dst.write(data)
            left -= len(data)
    os.rename(target + ".part", target)
    return os.path.join(KERNEL_DIR, filename)


def remove_kernel_ramdisk(session, args):
    removed = []
    for key in ("kernel-file", "ramdisk-file"):
        if args.get(key):
            path = args[key]
            if not path.startswith(KERNEL_DIR + "/"):
                dom0_pluginlib.invalid(key, path, "not under " + KERNEL_DIR)
            name = path[len(KERNEL_DIR) + 1:]
            if not _FILE.match(name):
                dom0_pluginlib.invalid(key, path, "not an accepted name")
            local = dom0_pluginlib.path_under(KERNEL_DIR, name)
            if os.path.exists(local):
                os.remove(local)
                removed.append(path)
    return " ".join(removed)


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"copy_vdi": copy_vdi, "remove_kernel_ramdisk": remove_kernel_ramdisk})
