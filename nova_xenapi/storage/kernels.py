"""Kernels and ramdisks of AMI images, placed in dom0's /boot/guest for PV boot.

As the old driver did: each (aki/ari) image is streamed into a small VDI,
the VDI is plugged into dom0 and the ``kernel.py`` plugin copies it to
``/boot/guest`` (refusing anything over ``[xenserver] max_kernel_ramdisk_size``);
the VDI is then removed.  The files go when the instance is destroyed.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.image import glance
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi import plugins
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

LOG = logging.getLogger(__name__)

KERNEL_DIR = "/boot/guest"
TRANSFER_TIMEOUT = 600.0


def fetch(context: Any, session: XenAPISession, sr: str, image_id: str, role: str,
          instance: Any, max_size: int, image_api: Any = None, unplug_retries: int = 10) -> str:
    """Put the image ``image_id`` in /boot/guest; return its dom0 path."""
    api = image_api or glance.API()
    meta = api.get(context, image_id)
    size = int(meta.get("size") or 0)
    if meta.get("disk_format") != ("aki" if role == "kernel" else "ari"):
        raise exception.ImageUnacceptable(image_id=image_id,
                                          reason=f"the {role} image is not an a{role[0]}i image")
    if size > max_size:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"{role} of {size} bytes is over [xenserver] "
            f"max_kernel_ramdisk_size ({max_size})")
    vdi = disks.create_vdi(session, sr, instance.uuid, role, f"{instance.name} {role}",
                           max(units.Mi, -(-size // units.Mi) * units.Mi))
    try:
        with disks.importer(session, vdi, "raw", size, TRANSFER_TIMEOUT) as writer:
            api.download(context, image_id, data=writer)
        dom0 = session.call_xenapi("host.get_control_domain", session.host_ref)
        with disks.plugged(session, dom0, vdi, read_only=True, unplug_retries=unplug_retries) as device:
            return plugins.call(session, "kernel.py", "copy_vdi", {
                "dev": device, "filename": f"{instance.uuid}-{role}", "length": str(size),
                "max_size": str(max_size)})
    finally:
        disks.destroy_vdi(session, vdi)


def remove(session: XenAPISession, kernel: str, ramdisk: str) -> None:
    """Delete an instance's kernel and ramdisk from /boot/guest (ignoring ones already gone)."""
    args = {k: v for k, v in (("kernel-file", kernel), ("ramdisk-file", ramdisk))
            if v.startswith(KERNEL_DIR + "/")}
    if not args:
        return
    try:
        plugins.call(session, "kernel.py", "remove_kernel_ramdisk", args)
    except (XenAPIError, plugins.PluginsMissing) as exc:
        LOG.warning("Could not remove %s from dom0: %s", " ".join(args.values()), exc)
