"""The bytes behind VDIs, one file per VDI.

SRs keep their VDIs under ``<state>/srs/<sr-uuid>/``.  File-based SRs
(``ext``, ``nfs``) hold real dynamic VHD files named ``<vdi-uuid>.vhd`` and
are visible in each attached host's dom0 under
``/var/run/sr-mount/<sr-uuid>/``, as on a real host.  As in SM's FileSR, a
file SR may also hold raw VDIs, ``<vdi-uuid>.raw`` (an NFS SR of Cinder
volumes, see ``nfs_sr.py``); their format comes from the file name.  An NFS
SR introduced by a client has its directory in an export
(``SimConfig.nfs_exports``): ``<state>/srs/<sr-uuid>`` is then a link to it.  Block-based SRs
(``lvm``) hold sparse raw files that stand in for logical volumes and are not
visible as files in dom0.  Format conversion (raw, VHD, qcow2) is done by
``qemu-img``, the maintained tool for it.

A VHD may be a differencing disk whose parent is another file of the SR
(dom0 plugins put such chains there, see ``vhd.py``); ``qemu-img`` does not
follow VHD parent links, so every conversion or copy out of another SR reads
such a disk through ``flattened()`` first.

On file SRs, clone and snapshot make differencing chains (``messages/vdi.py``
with ``vhd.py``); on block SRs they copy the file, where a real LVHD SR would
chain VHDs on logical volumes too.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import XapiError
from .vhd import DynamicVhd, VhdError
from .vhd import resize as vhd_resize

FILE_SR_TYPES = ("ext", "nfs", "file")
BLOCK_SR_TYPES = ("lvm", "lvmoiscsi", "lvmohba")
LUN_SR_TYPES = ("iscsi",)  # a VDI is a LUN of a real target (iscsi_sr.py)
ISO_SR_TYPES = ("iso", "udev")
MIB = 1 << 20
VHD_MAX_BYTES = 2040 * 1024 * MIB  # VDI_TOO_LARGE above this for VHD export


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise XapiError("INTERNAL_ERROR",
                        "qemu-img not found: install the qemu-utils package (xapisim needs it "
                        "to convert disk formats)")
    return path


def run_qemu_img(*args: str) -> str:
    proc = subprocess.run([qemu_img(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise XapiError("VDI_IO_ERROR", proc.stderr.strip()[:300] or "qemu-img failed")
    return proc.stdout


def image_info(path: Path, fmt: str | None = None) -> dict:
    import json
    args = ["info", "-U", "--output=json"]
    if fmt:
        args += ["-f", fmt]
    return json.loads(run_qemu_img(*args, str(path)))


def round_size(sr_type: str, size: int) -> int:
    """Round a requested size as the SM backends do (2 MiB VHD blocks, 4 MiB LVM extents)."""
    unit = 4 * MIB if sr_type in BLOCK_SR_TYPES else 2 * MIB
    return max(unit, -(-size // unit) * unit)


class DiskStore:
    """Creates, converts and removes VDI backing files for one backend."""

    def __init__(self, backend) -> None:
        self.backend = backend

    # -- paths -----------------------------------------------------------
    def sr_dir(self, sr_uuid: str) -> Path:
        d = self.backend.state_dir / "srs" / sr_uuid
        d.mkdir(parents=True, exist_ok=True)
        return d

    def is_file_sr(self, sr_type: str) -> bool:
        return sr_type in FILE_SR_TYPES

    def is_lun_sr(self, sr_type: str) -> bool:
        return sr_type in LUN_SR_TYPES

    def lun(self, sr_uuid: str, vdi_uuid: str):
        """(Target, LUN id) of a LUN-per-VDI SR's VDI, from an attached PBD and the VDI's
        sm_config; VDIUnavailable (SM's answer) when there is neither."""
        from .iscsi_sr import target_of
        from .sm_errors import sm_error
        store = self.backend.store
        with store.lock:
            sr = store.by_uuid_of("SR", sr_uuid)
            vdis = store.find("VDI", uuid=vdi_uuid)
            lun = store.get("VDI", vdis[0])["sm_config"].get("LUNid") if vdis else None
        target = target_of(store, sr)
        if lun is None:
            raise sm_error("VDIUnavailable")
        return target, int(lun)

    def mount_export(self, sr_uuid: str, directory: Path) -> None:
        """An NFS SR's directory is ``directory`` (a client introduced it over an export)."""
        link = self.backend.state_dir / "srs" / sr_uuid
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        elif link.is_dir():
            link.rmdir()  # made empty by an earlier look at the SR; refuses if it holds files
        link.symlink_to(directory.resolve(), target_is_directory=True)

    def path(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> Path:
        if self.is_lun_sr(sr_type):
            raise XapiError("INTERNAL_ERROR", f"VDI {vdi_uuid} is a LUN, not a file")
        d = self.sr_dir(sr_uuid)
        if self.is_file_sr(sr_type):
            raw = d / f"{vdi_uuid}.raw"  # FileSR's raw VDIs sit beside its VHDs
            return raw if raw.exists() else d / f"{vdi_uuid}.vhd"
        return d / f"{vdi_uuid}.raw"

    def fmt(self, sr_type: str) -> str:
        """qemu-img's format of a new VDI of an SR of this type."""
        return "vpc" if self.is_file_sr(sr_type) else "raw"

    def fmt_of(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> str:
        """qemu-img's format of an existing (or about to be made) VDI's file."""
        if self.is_file_sr(sr_type):
            return "raw" if self.path(sr_uuid, sr_type, vdi_uuid).suffix == ".raw" else "vpc"
        return "raw"

    def is_raw_file(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> bool:
        """A raw VDI of a file SR (no VHD chain, no snapshots, no resize in SM)."""
        return self.is_file_sr(sr_type) and self.fmt_of(sr_uuid, sr_type, vdi_uuid) == "raw"

    def attach_sr(self, host_ref: str, sr_uuid: str, sr_type: str) -> None:
        """Make a file SR visible in a host's dom0 (what PBD.plug does)."""
        if not self.is_file_sr(sr_type):
            return
        mnt = self.backend.dom0_root(host_ref) / "var/run/sr-mount"
        mnt.mkdir(parents=True, exist_ok=True)
        link = mnt / sr_uuid
        if not link.exists():
            link.symlink_to(self.sr_dir(sr_uuid), target_is_directory=True)

    def detach_sr(self, host_ref: str, sr_uuid: str, sr_type: str) -> None:
        """What PBD.unplug does: a file SR leaves the host's dom0 (its files stay)."""
        if not self.is_file_sr(sr_type):
            return
        link = self.backend.dom0_root(host_ref) / "var/run/sr-mount" / sr_uuid
        if link.is_symlink():
            link.unlink()

    # -- lifecycle -------------------------------------------------------
    def create(self, sr_uuid: str, sr_type: str, vdi_uuid: str, size: int) -> Path:
        return self._create_at(self.path(sr_uuid, sr_type, vdi_uuid), self.fmt(sr_type), size)

    def _create_at(self, p: Path, fmt: str, size: int) -> Path:
        if fmt == "vpc":
            run_qemu_img("create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
                         str(p), str(size))
        else:
            with open(p, "wb") as f:
                f.truncate(size)
        return p

    def destroy(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> None:
        if self.is_lun_sr(sr_type):
            return  # LUNperVDI.delete only unmanages: the LUN and its bytes stay on the target
        try:
            self.path(sr_uuid, sr_type, vdi_uuid).unlink()
        except FileNotFoundError:
            pass

    def physical_size(self, sr_uuid: str, sr_type: str, vdi_uuid: str, virtual: int) -> int:
        if not self.is_file_sr(sr_type):  # thick LVs, and whole LUNs
            return virtual  # thick LVs
        try:
            return os.stat(self.path(sr_uuid, sr_type, vdi_uuid)).st_blocks * 512
        except FileNotFoundError:
            return 0

    def copy(self, src: tuple[str, str, str], dst: tuple[str, str, str], size: int) -> None:
        """Copy the contents of one VDI into another (any SR types)."""
        if self.is_lun_sr(src[1]) or self.is_lun_sr(dst[1]):
            return self._copy_lun(src, dst, size)
        sp = self.path(*src)
        dp = self.path(*dst)
        same_sr = src[0] == dst[0]
        src_fmt, dst_fmt = self.fmt_of(*src), self.fmt_of(*dst)
        if src_fmt == dst_fmt and not dp.exists() and (same_sr or not is_differencing(sp)):
            # a differencing disk copied within its SR keeps pointing at the same parent
            subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(sp), str(dp)], check=True)
            return
        self._fill(sp, src_fmt, dp, dst_fmt, size, in_place=self.is_raw_file(*dst))

    def _copy_lun(self, src: tuple[str, str, str], dst: tuple[str, str, str], size: int) -> None:
        from . import iscsi_sr
        if self.is_lun_sr(src[1]):
            path, tmp = self.export_file(*src, "raw")
            try:
                self.import_image(path, "raw", *dst, size)
            finally:
                if tmp:
                    path.unlink()
            return
        target, lun = self.lun(dst[0], dst[2])
        with self.flattened(self.path(*src)) as flat:
            iscsi_sr.write_from(target, lun, flat, self.fmt_of(*src))

    @contextlib.contextmanager
    def flattened(self, path: Path):
        """``path``, or for a differencing VHD a temporary dynamic VHD holding its whole chain."""
        if not is_differencing(path):
            yield path
            return
        tmp = self.temp_file(".vhd")
        try:
            with DynamicVhd(str(path)) as chain:
                tmp.unlink()
                self._create_at(tmp, "vpc", chain.size)
                with DynamicVhd(str(tmp), writable=True) as flat:
                    for index in range(chain.block_count()):
                        data = chain.block_data(index)
                        if data is not None:
                            start = index * chain.block_size
                            flat.write_at(start, data[:chain.size - start])
            yield tmp
        except VhdError as e:
            raise XapiError("VDI_IO_ERROR", str(e)) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _fill(self, src: Path, src_fmt: str, dst: Path, dst_fmt: str, size: int,
              in_place: bool = False) -> None:
        """Make ``dst`` a disk of ``size`` holding ``src``'s contents, allocating only data.

        The copy goes into a new empty file (so ``--target-is-zero`` is true and
        qemu-img skips zero blocks instead of allocating them), which then
        replaces ``dst``.  ``in_place`` writes a raw file where it is instead, as
        tapdisk writes a file SR's raw VDI (other names of the file, such as a
        Cinder NFS volume's own, keep seeing it).
        """
        if in_place:
            with self.flattened(src) as flat:
                run_qemu_img("convert", "-n", "-f", src_fmt, "-O", "raw", str(flat), str(dst))
            return
        tmp = dst.with_name(dst.name + ".new")
        self._create_at(tmp, dst_fmt, size)
        try:
            with self.flattened(src) as flat:
                run_qemu_img("convert", "-n", "--target-is-zero", "-f", src_fmt, "-O",
                             dst_fmt, str(flat), str(tmp))
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)

    def resize(self, sr_uuid: str, sr_type: str, vdi_uuid: str, size: int) -> None:
        p = self.path(sr_uuid, sr_type, vdi_uuid)
        if self.fmt_of(sr_uuid, sr_type, vdi_uuid) == "raw":
            with open(p, "r+b") as f:
                f.truncate(size)
            return
        try:
            vhd_resize(str(p), size)  # in place: a differencing disk keeps its parents
        except VhdError as e:
            raise XapiError("VDI_IO_ERROR", str(e)) from None

    # -- import/export ---------------------------------------------------
    def temp_file(self, suffix: str) -> Path:
        d = self.backend.state_dir / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=suffix, dir=d)
        os.close(fd)
        return Path(name)

    def raw_writer_target(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> tuple[Path, bool]:
        """Where raw bytes for this VDI are written; True if they need converting after."""
        if self.is_file_sr(sr_type) or self.is_lun_sr(sr_type):
            return self.temp_file(".raw"), True
        return self.path(sr_uuid, sr_type, vdi_uuid), False

    def import_image(self, src: Path, src_fmt: str, sr_uuid: str, sr_type: str, vdi_uuid: str,
                     vdi_size: int) -> None:
        """Write an image file (raw, vpc, qcow2) into a VDI, checking it fits."""
        if src_fmt != "raw":
            info = image_info(src, src_fmt)
            if info.get("format") != src_fmt:
                raise XapiError("VDI_IO_ERROR", f"not a {src_fmt} image")
            # qemu-img would read a file of this machine for the image's data. xapi's qcow2
            # import (qcow-stream-tool) reads the stream alone; what it does with such a header
            # is not confirmed, so refusing it is the safe side of that doubt
            if info.get("backing-filename") or \
                    info.get("format-specific", {}).get("data", {}).get("data-file"):
                raise XapiError("VDI_IO_ERROR", f"a {src_fmt} image naming a backing or data file")
            if int(info["virtual-size"]) > vdi_size:
                raise XapiError("VDI_IO_ERROR", "image is larger than the VDI")
        elif src.stat().st_size > vdi_size:
            raise XapiError("VDI_IO_ERROR", "image is larger than the VDI")
        if self.is_lun_sr(sr_type):
            from . import iscsi_sr
            target, lun = self.lun(sr_uuid, vdi_uuid)
            with self.flattened(src) as flat:
                iscsi_sr.write_from(target, lun, flat, src_fmt)
            return
        dst = self.path(sr_uuid, sr_type, vdi_uuid)
        self._fill(src, src_fmt, dst, self.fmt_of(sr_uuid, sr_type, vdi_uuid), vdi_size,
                   in_place=self.is_raw_file(sr_uuid, sr_type, vdi_uuid))

    def export_file(self, sr_uuid: str, sr_type: str, vdi_uuid: str, fmt: str) -> tuple[Path, bool]:
        """A file holding the VDI in ``fmt``; True if it is a temporary to delete."""
        qfmt = {"raw": "raw", "vhd": "vpc", "qcow2": "qcow2"}[fmt]
        if self.is_lun_sr(sr_type):
            from . import iscsi_sr
            target, lun = self.lun(sr_uuid, vdi_uuid)
            tmp = self.temp_file("." + fmt)
            tmp.unlink()  # qemu-img makes it
            try:
                iscsi_sr.read_into(target, lun, tmp, qfmt)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return tmp, True
        p = self.path(sr_uuid, sr_type, vdi_uuid)
        fmt_here = self.fmt_of(sr_uuid, sr_type, vdi_uuid)
        if qfmt == fmt_here and not is_differencing(p):
            return p, False
        tmp = self.temp_file("." + fmt)
        opts = ["-o", "subformat=dynamic,force_size=on"] if qfmt == "vpc" else []
        try:
            with self.flattened(p) as flat:
                run_qemu_img("convert", "-f", fmt_here, "-O", qfmt, *opts, str(flat), str(tmp))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, True

    def read_all(self, sr_uuid: str, sr_type: str, vdi_uuid: str) -> bytes:
        """The raw contents (for tests and small reads)."""
        path, tmp = self.export_file(sr_uuid, sr_type, vdi_uuid, "raw")
        try:
            return path.read_bytes()
        finally:
            if tmp:
                path.unlink()

    # -- block access (raw import/export without converting files) --------
    def open_disk(self, sr_uuid: str, sr_type: str, vdi_uuid: str, writable: bool = False):
        """The VDI's virtual disk: ``write_at(offset, data)``, ``blocks()`` and ``size``."""
        if self.is_lun_sr(sr_type):
            return StagedLun(self, sr_uuid, vdi_uuid, writable)
        path = str(self.path(sr_uuid, sr_type, vdi_uuid))
        if self.fmt_of(sr_uuid, sr_type, vdi_uuid) == "vpc":
            try:
                return DynamicVhd(path, writable)
            except VhdError as e:
                raise XapiError("VDI_IO_ERROR", str(e)) from None
        return RawDisk(path, writable)


def is_differencing(path: Path) -> bool:
    """True for a differencing VHD (whose data is partly in its parents)."""
    try:
        with open(path, "rb") as f:
            footer = f.read(64)
    except OSError:
        return False
    return footer[:8] == b"conectix" and footer[60:64] == b"\0\0\0\x04"


class RawDisk:
    """A block-SR VDI: a plain sparse file, with the same interface as DynamicVhd."""

    BLOCK = 2 << 20

    def __init__(self, path: str, writable: bool) -> None:
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def write_at(self, offset: int, data) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise VhdError("write beyond the end of the virtual disk")
        os.pwrite(self.fd, data, offset)

    def blocks(self):
        for offset in range(0, self.size, self.BLOCK):
            yield os.pread(self.fd, min(self.BLOCK, self.size - offset), offset)

    def allocated(self):
        """Yield (offset, data) of the file's data regions block by block (holes skipped)."""
        offset = 0
        while offset < self.size:
            try:
                start = os.lseek(self.fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                return
            end = os.lseek(self.fd, start, os.SEEK_HOLE)
            start -= start % self.BLOCK
            while start < min(end, self.size):
                n = min(self.BLOCK, self.size - start)
                yield start, os.pread(self.fd, n, start)
                start += n
            offset = start

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> RawDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StagedLun(RawDisk):
    """A LUN read into a local raw file and, if opened writable, written back at close.

    Raw import and export address a VDI by offset; ``qemu-img`` reaches a LUN
    only by whole-disk conversion, so the LUN is staged through a sparse
    temporary file of the state directory.
    """

    def __init__(self, disks: DiskStore, sr_uuid: str, vdi_uuid: str, writable: bool) -> None:
        from . import iscsi_sr
        self._target, self._lun = disks.lun(sr_uuid, vdi_uuid)
        self._writable = writable
        self._path = disks.temp_file(".raw")
        self._path.unlink()
        try:
            iscsi_sr.read_into(self._target, self._lun, self._path)
            super().__init__(str(self._path), writable)
        except BaseException:
            self._path.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        from . import iscsi_sr
        try:
            super().close()
            if self._writable:
                iscsi_sr.write_from(self._target, self._lun, self._path)
        finally:
            self._path.unlink(missing_ok=True)
