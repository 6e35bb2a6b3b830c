"""Swap and ephemeral disks, formatted on the compute host and streamed in as VHD.

The filesystem is made on a sparse local file with Nova's own helpers
(``nova.privsep.fs.unprivileged_mkfs`` for swap, ``nova.virt.disk.api.mkfs``
for the ephemeral disk, which honours ``[DEFAULT] default_ephemeral_format``
and ``virt_mkfs``) and imported through XAPI's ``/import_raw_vdi`` with xapi's
``chunked`` framing, which sends only the regions mkfs wrote.  This needs no
dom0 plugin and works on every SR type.
"""

from __future__ import annotations

import os
import tempfile

import nova.privsep.fs
from nova import exception
from nova.virt.disk import api as disk_api
from oslo_concurrency import processutils

from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

TRANSFER_TIMEOUT = 3600.0


def _format_and_import(session: XenAPISession, vdi: str, size: int, make_fs) -> None:
    with tempfile.TemporaryDirectory(prefix="nova-xenapi-disk-") as tmp:
        raw = os.path.join(tmp, "disk.raw")
        with open(raw, "wb") as f:
            f.truncate(size)
        try:
            make_fs(raw)
        except (processutils.ProcessExecutionError, OSError) as exc:
            raise exception.NovaException(f"could not make the filesystem: {exc}") from None
        disks.import_sparse(session, vdi, raw, TRANSFER_TIMEOUT)


def fill_swap(session: XenAPISession, vdi: str, size: int, os_type: str) -> None:
    """Linux swap; a FAT filesystem for Windows guests, as the old driver made for their pagefile."""
    fs = "vfat" if os_type == "windows" else "swap"
    _format_and_import(session, vdi, size, lambda path: nova.privsep.fs.unprivileged_mkfs(fs, path))


def fill_ephemeral(session: XenAPISession, vdi: str, size: int, os_type: str) -> None:
    _format_and_import(session, vdi, size,
                       lambda path: disk_api.mkfs(os_type, "ephemeral0", path, run_as_root=False))
