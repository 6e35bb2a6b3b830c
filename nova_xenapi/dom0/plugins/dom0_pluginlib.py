"""Helpers shared by the nova-xenapi dom0 plugins (runs on the dom0's Python 3.6).

Argument checking that refuses anything a caller could use to escape: every
argument is a string (XAPI passes a string map), integers are plain decimal
within bounds, and paths stay under their allowed roots
after resolving ``..`` and symlinks.  No shell is ever used.
"""

import os
import re

import XenAPIPlugin

PLUGIN_API_VERSION = "3.5"

_INT = re.compile(r"\A[0-9]{1,18}\Z")
_DEV = re.compile(r"\A(xvd[a-z]{1,2}|sd[a-z])\Z")  # a disk xapi plugged into dom0


def invalid(name, value, why):
    raise XenAPIPlugin.Failure("INVALID_ARGUMENT", [name, str(value)[:80], why])


def arg(args, name):
    """A required string argument."""
    if name not in args:
        raise XenAPIPlugin.Failure("MISSING_ARGUMENT", [name])
    value = args[name]
    if not isinstance(value, str):
        invalid(name, value, "not a string")
    return value


def int_arg(args, name, low, high):
    value = arg(args, name)
    if not _INT.match(value):
        invalid(name, value, "not a decimal integer")
    number = int(value)
    if not low <= number <= high:
        invalid(name, value, f"outside {low}..{high}")
    return number


def device(args):
    """The ``dev`` argument, a disk plugged into dom0: (its name, its ``/dev`` path)."""
    dev = arg(args, "dev")
    if not _DEV.match(dev):
        invalid("dev", dev, "not an accepted device name")
    return dev, host_path("/dev/" + dev)  # dev matched _DEV: no path can hide in it


def present(dev, path):
    """``path``, the device ``dev``, refused unless it is there (once every argument checked)."""
    if not os.path.exists(path):
        raise XenAPIPlugin.Failure("NO_SUCH_DEVICE", [dev])
    return path


def dom0_root():
    """``/`` on a real dom0; the simulated dom0's directory under xapisim."""
    return os.environ.get("XAPISIM_DOM0_ROOT", "/")


def host_path(path):
    """An absolute dom0 path, mapped into the simulated dom0 when there is one."""
    return os.path.join(dom0_root(), path.lstrip("/"))


def path_under(root, *parts):
    """``root``/``parts`` resolved, refused unless it is still inside ``root``."""
    base = os.path.realpath(host_path(root))
    target = os.path.realpath(os.path.join(base, *parts))
    if target != base and not target.startswith(base + os.sep):
        invalid("path", os.path.join(*parts), "outside " + root)
    return target
