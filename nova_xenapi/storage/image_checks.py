"""Checks on an image's bytes as they stream from Glance: format, safety, size.

A qcow2 with a backing file or an external data file, or a differencing
VHD, names a file on whichever machine converts it (``qemu-img`` here with
``vdi_local_dev``, the host's tools with ``vdi_remote_stream``): such an
image is refused before any of its bytes reach a disk, as Nova refuses it
for libvirt (``nova.virt.images.do_image_deep_inspection``). The header is
read with the same inspectors, oslo.utils' ``format_inspector``, so a
content that is not the image's ``disk_format`` is refused too. A header
whose virtual size is over the flavor's disk, or a raw stream longer than
it, is refused as soon as it shows.
"""

from __future__ import annotations

import struct
from typing import Any

from nova import exception
from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector

LOG = logging.getLogger(__name__)

VHD_DIFFERENCING = 4  # the footer's disk type: 2 fixed, 3 dynamic, 4 differencing


class ImageChecker:
    """Forwards an image stream to ``inner.write``, refusing it as soon as its bytes show it
    is unsafe, not its ``disk_format``, or too big for ``limit`` bytes."""

    def __init__(self, inner: Any, disk_format: str, limit: int, image_id: str) -> None:
        self._inner = inner
        self._format = disk_format
        self._limit = limit
        self._image_id = image_id
        inspector = format_inspector.get_inspector(disk_format) if disk_format != "raw" else None
        self._inspector = inspector() if inspector else None
        self._checked = self._inspector is None
        self.seen = 0

    def write(self, data: bytes) -> None:
        self.seen += len(data)
        if self._format == "raw" and self.seen > self._limit:
            self._too_big(self.seen)
        if not self._checked:
            self._inspector.eat_chunk(bytes(data))
            if self._inspector.complete:
                self._check_header()
        self._inner.write(data)

    def finish(self) -> None:
        """The stream ended: an image too short to hold its own header is refused."""
        if not self._checked:
            self._refuse(f"it ends before its {self._format} header does")

    def _check_header(self) -> None:
        self._checked = True
        inspector = self._inspector
        if not inspector.format_match:
            self._refuse(f"its content is not {self._format}")
        try:
            inspector.safety_check()
        except format_inspector.SafetyCheckFailed as exc:
            LOG.warning("Image %s failed the safety check: %s", self._image_id, exc)
            self._refuse("it does not pass the safety check: " + "; ".join(
                str(e) for e in exc.failures.values()))
        except format_inspector.ImageFormatError as exc:
            self._refuse(str(exc))
        if self._format == "vhd":
            disk_type = struct.unpack(">I", inspector.region("header").data[60:64])[0]
            if disk_type == VHD_DIFFERENCING:
                self._refuse("it is a differencing VHD, whose parent is a file elsewhere")
        if inspector.virtual_size > self._limit:
            self._too_big(inspector.virtual_size)

    def _refuse(self, reason: str) -> None:
        raise exception.ImageUnacceptable(image_id=self._image_id, reason=reason)

    def _too_big(self, size: int) -> None:
        raise exception.FlavorDiskSmallerThanImage(flavor_size=self._limit, image_size=size)
