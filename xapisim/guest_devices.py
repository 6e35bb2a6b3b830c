"""Disks hot-plugged into a running guest, shown as files the way the guest sees /dev/xvdX.

With ``SimConfig.device_dir`` set, ``VBD.plug`` on a running VM makes
``<device_dir>/<vm-uuid>/<device>`` hold the VDI's bytes as a raw disk, and
``VBD.unplug`` writes what the guest changed back into the VDI and removes
the file.  A block-SR VDI, or a raw VDI of a file SR, is its raw file
already (a link is enough); any other file-SR VDI is a VHD, so its data is copied out to a sparse raw file and
its changed regions written back block by block.  A LUN of an ``iscsi`` SR
is read into the file and written back to the LUN whole.  This is how a
compute VM's ``vdi_local_dev`` image handler is tested.
"""
from __future__ import annotations

import os
from pathlib import Path

from .vhd import DynamicVhd


def device_path(device_dir: str, vm_uuid: str, device: str) -> Path:
    return Path(device_dir) / vm_uuid / device


def expose(disks, sr_uuid: str, sr_type: str, vdi_uuid: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if disks.is_lun_sr(sr_type):
        from .iscsi_sr import read_into
        path.unlink(missing_ok=True)
        read_into(*disks.lun(sr_uuid, vdi_uuid), path)
        _keep_original(path)
        return
    source = disks.path(sr_uuid, sr_type, vdi_uuid)
    if disks.fmt_of(sr_uuid, sr_type, vdi_uuid) == "raw":
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(source)
        return
    with DynamicVhd(str(source)) as vhd, open(path, "wb") as out:
        out.truncate(vhd.size)
        for index in range(vhd.block_count()):
            data = vhd.block_data(index)  # through the parents of a differencing disk
            if data is not None:
                start = index * vhd.block_size
                os.pwrite(out.fileno(), data[:max(0, vhd.size - start)], start)


def withdraw(disks, sr_uuid: str, sr_type: str, vdi_uuid: str, path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if disks.is_lun_sr(sr_type):
        from .iscsi_sr import write_from
        original = _original(path)
        if not original.exists() or _differs(path, original):  # only what the guest changed
            write_from(*disks.lun(sr_uuid, vdi_uuid), path)
        original.unlink(missing_ok=True)
    elif disks.fmt_of(sr_uuid, sr_type, vdi_uuid) == "vpc":
        with DynamicVhd(str(disks.path(sr_uuid, sr_type, vdi_uuid)), writable=True) as vhd, \
                open(path, "rb") as raw:
            # blocks the guest wrote (data in the sparse file) and blocks that held data before
            touched = {i for i in range(vhd.block_count()) if vhd.holds(i)}
            for start, length in _data_extents(raw.fileno(), vhd.size):
                touched.update(range(start // vhd.block_size,
                                     (start + length - 1) // vhd.block_size + 1))
            for index in sorted(touched):
                start = index * vhd.block_size
                data = os.pread(raw.fileno(), min(vhd.block_size, vhd.size - start), start)
                vhd.write_at(start, data.ljust(min(vhd.block_size, vhd.size - start), b"\0"))
    path.unlink()


def _original(path: Path) -> Path:
    return path.with_name(f".{path.name}.at-plug")


def _keep_original(path: Path) -> None:
    """A copy of what the LUN held at plug time, so unplug writes back only a guest's change
    (and never undoes what reached the LUN another way meanwhile)."""
    import subprocess
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(path), str(_original(path))],
                   check=True)


def _differs(a: Path, b: Path, block: int = 4 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return True
            if not x:
                return False


def _data_extents(fd: int, size: int):
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        pos = end
