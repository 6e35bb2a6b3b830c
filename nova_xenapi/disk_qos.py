"""Disk I/O from the flavor: the priority XAPI can give, and a clear no to the limits it cannot.

XAPI's only disk QoS is a VBD's ``qos_algorithm_type: ionice`` (xen-api
``xapi_xenops.ml``): the scheduling class and priority of the guest's block
backend in dom0. It has nothing for byte or IOPS limits, so Nova's
``quota:disk_*`` extra specs (libvirt's I/O tuning) are refused at boot and at
resize, rather than ignored. A flavor sets the priority of the server's own
disks (root, swap, ephemeral) with ``xenapi:disk_io_priority``:
``highest``, ``high``, ``normal``, ``low`` or ``lowest`` (best-effort at that
priority) or ``idle`` (only when no other disk wants the device).
"""

from __future__ import annotations

from typing import Any

from nova import exception

PRIORITY = "xenapi:disk_io_priority"
PRIORITIES = ("highest", "high", "normal", "low", "lowest", "idle")


def check(instance: Any, flavor: Any) -> None:
    """Refuse what XAPI cannot do for ``flavor``'s disks (InvalidInput aborts a build)."""
    specs = flavor.extra_specs or {}
    limits = sorted(k for k in specs if k.startswith("quota:disk_"))
    if limits:
        raise exception.InvalidInput(reason=(
            f"{instance.name}: XAPI has no disk byte or IOPS limits for {', '.join(limits)} "
            f"(a VBD's QoS is an I/O priority: {PRIORITY}); use Cinder's QoS for volumes"))
    value = specs.get(PRIORITY)
    if value is not None and value not in PRIORITIES:
        raise exception.InvalidInput(reason=f"{instance.name}: {PRIORITY}={value!r} is not one "
                                            f"of {', '.join(PRIORITIES)}")


def vbd_qos(flavor: Any) -> tuple[str, dict[str, str]]:
    """The VBD's (qos_algorithm_type, qos_algorithm_params) for the flavor's disks."""
    value = (flavor.extra_specs or {}).get(PRIORITY)
    if value is None:
        return "", {}
    if value == "idle":
        return "ionice", {"sched": "idle"}
    return "ionice", {"sched": "best-effort", "class": value}
