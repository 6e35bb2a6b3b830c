"""The compute VM's own identity on the host, and where it sees its block devices."""

from __future__ import annotations

import os

HYPERVISOR_UUID = "/sys/hypervisor/uuid"  # a Xen guest's own VM uuid
DEVICE_DIR = "/dev"  # where a hot-plugged VBD's device (xvdb, ...) appears


def own_uuid() -> str | None:
    """This VM's uuid, or None when nova-compute does not run in a Xen guest."""
    try:
        with open(HYPERVISOR_UUID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def device_path(device: str) -> str:
    return os.path.join(DEVICE_DIR, device)
