"""Image handlers: moving disk images between Glance and VDIs.

One interface, chosen by ``[xenserver] image_handler``: ``fetch`` makes the
VDI holding an image, ``upload`` sends a VDI to Glance, ``check_sr`` refuses
an SR the handler cannot use (at start-up, not at the first boot).

``vdi_remote_stream`` streams through XAPI's own HTTP handlers
(``/import_raw_vdi``, ``/export_raw_vdi``) and works on every SR type.
``vdi_local_dev`` plugs the VDI into this compute VM and streams through the
local block device (raw images straight, vhd/qcow2 through ``qemu-img
convert``); snapshots are read from the device into a dynamic VHD and
uploaded like vdi_remote_stream's.  ``direct_vhd`` (the old driver's
default) has dom0 fetch the image's VHD chain from Glance straight into a
file SR with the ``glance_vhd`` plugin, and upload a snapshot's chain the
same way: the bytes never pass through this compute VM.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from nova import exception
from nova.image import glance
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi import this_vm
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
from nova_xenapi.storage.image_checks import ImageChecker

LOG = logging.getLogger(__name__)

# Glance disk formats that XAPI's /import_raw_vdi reads, with its format name.
# an AMI machine image is a raw filesystem (its kernel and ramdisk are separate images)
IMPORT_FORMATS = {"raw": "raw", "vhd": "vhd", "qcow2": "qcow2", "ami": "raw"}
QEMU_FORMATS = {"raw": "raw", "vhd": "vpc", "qcow2": "qcow2", "ami": "raw"}  # qemu-img's names
UPLOAD_FORMAT = "vhd"
TRANSFER_TIMEOUT = 3600.0


class HandlerNotAvailable(exception.NovaException):
    msg_fmt = "image_handler %(name)s is not available: %(reason)s"


class _FillingHandler:
    """A handler that fills a VDI made here (``download``), rather than one dom0 makes."""

    def fetch(self, context: Any, session: XenAPISession, image_meta: Any, sr: str, size: int,
              name_label: str, other_config: dict[str, str]) -> tuple[str, int]:
        """A new VDI of ``size`` holding the image, and the bytes streamed into it."""
        vdi = disks.create_vdi(session, sr, "", other_config.get("nova_disk_type", "image-cache"),
                               name_label, size, other_config=other_config)
        try:
            return vdi, self.download(context, session, image_meta, vdi)
        except BaseException:
            disks.destroy_vdi(session, vdi)
            raise

    def download(self, context: Any, session: XenAPISession, image_meta: Any, vdi: str) -> int:
        raise NotImplementedError


class RemoteStreamHandler(_FillingHandler):
    """``vdi_remote_stream``: Glance → compute → XAPI HTTP, and back for snapshots."""

    name = "vdi_remote_stream"

    def __init__(self, image_api: Any = None) -> None:
        self._glance = image_api or glance.API()

    def check_sr(self, session: XenAPISession, sr: str) -> None:
        """Every SR type can import and export raw VDIs."""

    def download(self, context: Any, session: XenAPISession, image_meta: Any, vdi: str) -> int:
        """Fill ``vdi`` with the image; return the bytes streamed."""
        fmt = IMPORT_FORMATS[image_meta.disk_format]
        limit = disks.virtual_size(session, vdi)
        if not image_meta.obj_attr_is_set("size") or not image_meta.size:
            raise exception.ImageUnacceptable(image_id=image_meta.id, reason="Glance records no size")
        if fmt == "raw" and image_meta.size > limit:
            raise exception.FlavorDiskSmallerThanImage(flavor_size=limit, image_size=image_meta.size)
        with disks.importer(session, vdi, fmt, int(image_meta.size), TRANSFER_TIMEOUT) as writer:
            checker = ImageChecker(writer, fmt, limit, image_meta.id)
            self._glance.download(context, image_meta.id, data=checker)
            checker.finish()
        LOG.debug("Streamed %d bytes of image %s into the root disk", checker.seen, image_meta.id)
        return checker.seen

    def upload(self, context: Any, session: XenAPISession, image_id: str, vdi: str,
               metadata: dict) -> None:
        """Send ``vdi`` to Glance as a VHD image."""
        meta = dict(metadata)
        meta.update(disk_format=UPLOAD_FORMAT, container_format="bare")
        with disks.exporter(session, vdi, UPLOAD_FORMAT) as stream:
            self._glance.update(context, image_id, meta, data=stream, purge_props=False)


class LocalDevHandler(_FillingHandler):
    """``vdi_local_dev``: the VDI is plugged into this compute VM and written as /dev/xvdX."""

    name = "vdi_local_dev"

    def __init__(self, image_api: Any = None, unplug_retries: int = 10) -> None:
        self._glance = image_api or glance.API()
        self._unplug_retries = unplug_retries  # [xenserver] num_vbd_unplug_retries

    def check_sr(self, session: XenAPISession, sr: str) -> None:
        """Any SR works: XAPI does the block I/O."""

    @contextlib.contextmanager
    def attached(self, session: XenAPISession, vdi: str, read_only: bool = False):
        """The VDI plugged into this VM; yields the path of its block device."""
        me = this_vm.own_uuid()
        if me is None:
            raise HandlerNotAvailable(name=self.name, reason="nova-compute does not run in a Xen "
                                      "guest on this host (no /sys/hypervisor/uuid)")
        vm = session.call_xenapi("VM.get_by_uuid", me)
        with disks.plugged(session, vm, vdi, read_only, self._unplug_retries) as device:
            yield this_vm.device_path(device)

    def download(self, context: Any, session: XenAPISession, image_meta: Any, vdi: str) -> int:
        if image_meta.disk_format not in IMPORT_FORMATS:
            raise exception.ImageUnacceptable(image_id=image_meta.id,
                                              reason=f"disk_format {image_meta.disk_format}")
        fmt = "raw" if QEMU_FORMATS[image_meta.disk_format] == "raw" else image_meta.disk_format
        limit = disks.virtual_size(session, vdi)
        with self.attached(session, vdi) as device:
            if fmt == "raw":
                with open(device, "r+b") as dev:
                    checker = ImageChecker(dev, "raw", limit, image_meta.id)
                    self._glance.download(context, image_meta.id, data=checker)
                    dev.flush()
                    os.fsync(dev.fileno())
                return checker.seen
            with tempfile.NamedTemporaryFile(prefix="nova-xenapi-img-") as tmp:
                checker = ImageChecker(tmp, fmt, limit, image_meta.id)
                self._glance.download(context, image_meta.id, data=checker)
                checker.finish()  # qemu-img reads only what passed the checks
                tmp.flush()
                processutils.execute("qemu-img", "convert", "-n", "-f", QEMU_FORMATS[fmt],
                                     "-O", "raw", tmp.name, device)
                return checker.seen

    def upload(self, context: Any, session: XenAPISession, image_id: str, vdi: str,
               metadata: dict) -> None:
        meta = dict(metadata)
        meta.update(disk_format=UPLOAD_FORMAT, container_format="bare")
        with self.attached(session, vdi, read_only=True) as device, \
                tempfile.NamedTemporaryFile(prefix="nova-xenapi-snap-", suffix=".vhd") as tmp:
            # a dynamic VHD keeps only the blocks that hold data: a mostly empty disk stays small
            processutils.execute("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                                 "subformat=dynamic,force_size=on", device, tmp.name)
            with open(tmp.name, "rb") as data:
                self._glance.update(context, image_id, meta, data=data, purge_props=False)


def root_disk_size(instance: Any, image_meta: Any) -> int:
    """Bytes for the root VDI: the flavor's root_gb, or the image's size if that is 0."""
    root_gb = int(instance.flavor.root_gb or 0)
    if root_gb:
        return root_gb * units.Gi
    virtual = image_meta.obj_attr_is_set("virtual_size") and image_meta.virtual_size
    if virtual:
        return int(virtual)
    if IMPORT_FORMATS.get(image_meta.disk_format) == "raw" and image_meta.obj_attr_is_set("size") \
            and image_meta.size:
        return int(image_meta.size)
    raise exception.ImageUnacceptable(
        image_id=image_meta.id,
        reason="the flavor has no root disk size and the image does not record its virtual size")


def check_bootable(image_meta: Any) -> None:
    """Refuse image kinds this release cannot boot, before anything is made."""
    fmt = image_meta.disk_format if image_meta.obj_attr_is_set("disk_format") else None
    if fmt in ("aki", "ari"):
        raise exception.ImageUnacceptable(
            image_id=image_meta.id, reason="a kernel or ramdisk image cannot be booted on its own")
    if fmt not in IMPORT_FORMATS:
        raise exception.ImageUnacceptable(
            image_id=image_meta.id,
            reason=f"disk_format {fmt!r} is not one of {', '.join(sorted(IMPORT_FORMATS))}")
