#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: grow the root partition and its filesystem (auto_disk_config).

``grow_root`` works on a disk plugged into dom0 (``/dev/<dev>``) whose VDI was
already made bigger.  As the old driver required, the disk must hold exactly
one partition with an ext2/3/4 filesystem; on an MBR disk that partition is
extended to the end of the disk, on a GPT disk the backup header moves to the
new end as well.  The filesystem is checked (``e2fsck -f -y``) before the
table is touched and grown (``resize2fs``) afterwards; both reach it through
e2fsprogs' ``?offset=`` option, so no partition device node is needed.  If
``resize2fs`` fails the old table is written back.

A layout this cannot handle fails with ``CANNOT_RESIZE_DISK`` and changes
nothing; the driver then boots the disk as it is, as the old driver did.
"""

import os
import stat
import struct
import subprocess
import zlib

import dom0_pluginlib
import XenAPIPlugin

SECTOR = 512
_MBR_LINUX = 0x83
_MBR_GPT = 0xEE
_GPT_SIGNATURE = b"EFI PART"
_GPT_LINUX_TYPES = (  # Linux filesystem data, Linux root (x86-64), basic data (old tools)
    "0fc63daf-8483-4772-8e79-3d69d8477de4",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
)
_EXT_MAGIC = 0xEF53
_ALIGN = 2048  # sectors: partitions end on a 1 MiB boundary, as parted and sfdisk leave them


def _cannot(reason):
    raise XenAPIPlugin.Failure("CANNOT_RESIZE_DISK", [reason])


def _run(*cmd):
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    return proc.returncode, proc.stdout.strip()[-400:]


def _disk_sectors(fd):
    return os.lseek(fd, 0, os.SEEK_END) // SECTOR


def _read(fd, lba, count=1):
    return os.pread(fd, count * SECTOR, lba * SECTOR)


def _write(fd, lba, data):
    os.pwrite(fd, data, lba * SECTOR)


class _Mbr:
    """A DOS partition table with one Linux partition."""

    def __init__(self, fd, sector0):
        self.fd = fd
        self.old = sector0
        used = [i for i in range(4) if sector0[446 + 16 * i + 4] != 0]
        if len(used) != 1:
            _cannot(f"the disk must have exactly one partition, it has {len(used)}")
        self.entry = 446 + 16 * used[0]
        ptype = sector0[self.entry + 4]
        if ptype != _MBR_LINUX:
            _cannot(f"the partition has type 0x{ptype:02x}, not a Linux partition (0x83)")
        self.start, self.sectors = struct.unpack_from("<II", sector0, self.entry + 8)

    def planned(self, disk):
        """The partition's size in sectors once it reaches the end of a disk of ``disk`` sectors."""
        return min(disk, 2 ** 32 - 1) // _ALIGN * _ALIGN - self.start  # DOS counts stop at 2 TiB

    def grow(self, disk):
        table = bytearray(self.old)
        # LBA-only end (the CHS fields cannot describe a disk this size anyway)
        table[self.entry + 5:self.entry + 8] = b"\xfe\xff\xff"
        struct.pack_into("<I", table, self.entry + 12, self.planned(disk))
        _write(self.fd, 0, bytes(table))

    def restore(self):
        _write(self.fd, 0, self.old)


class _Gpt:
    """A GUID partition table with one Linux partition; the backup copy follows the disk's end."""

    def __init__(self, fd, disk):
        self.fd = fd
        header = _read(fd, 1)
        if header[:8] != _GPT_SIGNATURE:
            _cannot("the protective MBR has no GPT header behind it")
        size, = struct.unpack_from("<I", header, 12)
        if not 92 <= size <= SECTOR or zlib.crc32(header[:16] + b"\0" * 4 + header[20:size]) != \
                struct.unpack_from("<I", header, 16)[0]:
            _cannot("the GPT header is damaged")
        self.header = bytearray(header[:size])
        (self.backup_lba, self.first, self.last, self.entries_lba, self.count,
         self.entry_size) = struct.unpack_from("<QQQ16xQII", header, 32)
        if self.entry_size < 128 or self.count * self.entry_size > 1024 * 1024:
            _cannot("the GPT partition array has an unusual shape")
        self.array_sectors = -(-self.count * self.entry_size // SECTOR)
        self.old_array = _read(fd, self.entries_lba, self.array_sectors)
        if zlib.crc32(self.old_array[:self.count * self.entry_size]) != \
                struct.unpack_from("<I", header, 88)[0]:
            _cannot("the GPT partition array is damaged")
        used = [i for i in range(self.count) if any(self._entry(self.old_array, i)[:16])]
        if len(used) != 1:
            _cannot(f"the disk must have exactly one partition, it has {len(used)}")
        self.index = used[0]
        entry = self._entry(self.old_array, self.index)
        ptype = _guid(entry[:16])
        if ptype not in _GPT_LINUX_TYPES:
            _cannot(f"the partition has type {ptype}, not a Linux filesystem")
        self.start, end = struct.unpack_from("<QQ", entry, 32)
        self.sectors = end - self.start + 1
        self.old_sectors = {lba: _read(fd, lba) for lba in (1, self.backup_lba)}
        if self.backup_lba >= disk:
            _cannot("the GPT backup header lies beyond the disk")

    def _entry(self, array, i):
        return array[i * self.entry_size:(i + 1) * self.entry_size]

    def _last_usable(self, disk):
        return disk - 1 - self.array_sectors - 1

    def planned(self, disk):
        return (self._last_usable(disk) + 1) // _ALIGN * _ALIGN - self.start

    def grow(self, disk):
        backup = disk - 1
        last_usable = self._last_usable(disk)
        array = bytearray(self.old_array)
        struct.pack_into("<Q", array, self.index * self.entry_size + 40,
                         self.start + self.planned(disk) - 1)
        array_crc = zlib.crc32(bytes(array[:self.count * self.entry_size]))
        for my_lba, other_lba, entries_lba in ((1, backup, self.entries_lba),
                                               (backup, 1, backup - self.array_sectors)):
            header = bytearray(self.header)
            struct.pack_into("<QQ", header, 24, my_lba, other_lba)
            struct.pack_into("<Q", header, 48, last_usable)
            struct.pack_into("<Q", header, 72, entries_lba)
            struct.pack_into("<I", header, 88, array_crc)
            struct.pack_into("<I", header, 16, 0)
            struct.pack_into("<I", header, 16, zlib.crc32(bytes(header)))
            _write(self.fd, entries_lba, bytes(array))
            _write(self.fd, my_lba, bytes(header).ljust(SECTOR, b"\0"))
        if self.backup_lba != backup:  # the old backup header would confuse a later repair
            _write(self.fd, self.backup_lba, b"\0" * SECTOR)

    def restore(self):
        _write(self.fd, self.entries_lba, self.old_array)
        for lba, data in self.old_sectors.items():
            _write(self.fd, lba, data)


def _guid(raw):
    a, b, c = struct.unpack_from("<IHH", raw)
    d = raw[8:].hex()
    return f"{a:08x}-{b:04x}-{c:04x}-{d[:4]}-{d[4:]}"


def _table(fd, disk):
    sector0 = _read(fd, 0)
    if sector0[510:512] != b"\x55\xaa":
        _cannot("the disk has no partition table")
    if any(sector0[446 + 16 * i + 4] == _MBR_GPT for i in range(4)):
        return _Gpt(fd, disk)
    return _Mbr(fd, sector0)


def _check_ext(fd, start):
    superblock = os.pread(fd, 1024, start * SECTOR + 1024)
    if len(superblock) < 1024 or struct.unpack_from("<H", superblock, 56)[0] != _EXT_MAGIC:
        _cannot("the partition does not hold an ext2/3/4 filesystem")


def grow_root(session, args):
    dev, path = dom0_pluginlib.device(args)
    dom0_pluginlib.present(dev, path)
    fd = os.open(path, os.O_RDWR)
    try:
        disk = _disk_sectors(fd)
        table = _table(fd, disk)
        _check_ext(fd, table.start)
        fs = f"{path}?offset={table.start * SECTOR}"
        sectors = table.planned(disk)
        if sectors <= table.sectors:
            return f"unchanged {table.sectors * SECTOR}"
        code, out = _run("e2fsck", "-f", "-y", fs)
        if code >= 4:  # 1 and 2 mean errors were corrected
            raise XenAPIPlugin.Failure("FILESYSTEM_CHECK_FAILED", [dev, str(code), out])
        table.grow(disk)
        os.fsync(fd)
        code, out = _run("resize2fs", fs, f"{sectors}s")
        if stat.S_ISREG(os.fstat(fd).st_mode):
            # On an image file (not a block device) resize2fs sets the file's length to the
            # filesystem's, leaving out the offset: give the disk its length and tail back.
            os.ftruncate(fd, disk * SECTOR)
            table.grow(disk)
        if code != 0:
            table.restore()
            os.fsync(fd)
            raise XenAPIPlugin.Failure("FILESYSTEM_RESIZE_FAILED", [dev, str(code), out])
        return f"resized {sectors * SECTOR}"
    finally:
        os.close(fd)


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"grow_root": grow_root})
