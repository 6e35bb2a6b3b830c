"""Partitioned raw disk images for tests: an MBR or GPT table and an ext4 filesystem with files.

The tables are written here with ``struct`` (no partitioning tool is needed
on the test machine); ``partitions`` reads any disk back with util-linux's
``partx``, an independent reader that checks GPT checksums, and ``read_file``
reads a file out of the filesystem with e2fsprogs' ``debugfs``.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

SECTOR = 512
START = 2048
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
GPT_ARRAY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR


def _mbr_entry(ptype: int, start: int, sectors: int) -> bytes:
    return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start, sectors)


def _mbr(entries: list[bytes]) -> bytes:
    table = bytearray(SECTOR)
    for i, entry in enumerate(entries):
        table[446 + 16 * i:462 + 16 * i] = entry
    table[510:512] = b"\x55\xaa"
    return bytes(table)


def _gpt(f, disk: int, parts: list[tuple[int, int]]) -> None:
    array = bytearray(GPT_ENTRIES * GPT_ENTRY_SIZE)
    for i, (start, end) in enumerate(parts):
        struct.pack_into("<16s16sQQQ", array, i * GPT_ENTRY_SIZE, LINUX_FS.bytes_le,
                         uuid.uuid4().bytes_le, start, end, 0)
    disk_guid = uuid.uuid4().bytes_le
    backup = disk - 1
    for my_lba, other, entries in ((1, backup, 2), (backup, 1, backup - GPT_ARRAY_SECTORS)):
        header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0,
                                       my_lba, other, 2 + GPT_ARRAY_SECTORS,
                                       backup - GPT_ARRAY_SECTORS - 1, disk_guid, entries,
                                       GPT_ENTRIES, GPT_ENTRY_SIZE, zlib.crc32(bytes(array))))
        struct.pack_into("<I", header, 16, zlib.crc32(bytes(header)))
        f.seek(entries * SECTOR)
        f.write(array)
        f.seek(my_lba * SECTOR)
        f.write(bytes(header).ljust(SECTOR, b"\0"))
    f.seek(0)
    f.write(_mbr([_mbr_entry(0xEE, 1, min(disk - 1, 0xFFFFFFFF))]))


def partitioned(path: Path, size: int, part_size: int, table: str = "mbr", count: int = 1,
                files: dict[str, bytes] | None = None, fs: str = "ext4") -> Path:
    """A raw disk of ``size`` bytes: ``count`` partitions of ``part_size`` bytes, the first
    holding an ``fs`` filesystem with ``files`` (``fs=""`` leaves it empty)."""
    disk = size // SECTOR
    sectors = part_size // SECTOR
    parts = [(START + i * sectors, START + (i + 1) * sectors - 1) for i in range(count)]
    with open(path, "wb") as f:
        f.truncate(size)
        if table == "gpt":
            _gpt(f, disk, parts)
        elif table == "mbr":
            f.write(_mbr([_mbr_entry(0x83, s, e - s + 1) for s, e in parts]))
    if fs:
        with tempfile.TemporaryDirectory() as content:
            for name, data in (files or {}).items():
                (Path(content) / name).write_bytes(data)
            subprocess.run([f"mkfs.{fs}", "-q", "-F", "-d", content, "-E", f"offset={START * SECTOR}",
                            str(path), f"{part_size // 1024}k"], check=True, capture_output=True)
    return path


def partitions(path: Path) -> list[dict[str, int | str]]:
    """The partitions partx finds: number, start, end, sectors, type."""
    out = subprocess.run(["partx", "--show", "--bytes", "--noheadings",
                          "-o", "NR,START,END,SECTORS,TYPE", str(path)],
                         check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return [{"nr": int(r[0]), "start": int(r[1]), "end": int(r[2]), "sectors": int(r[3]),
             "type": r[4]} for r in rows]


def fs_check(path: Path, start: int = START) -> tuple[int, str]:
    """``e2fsck -f -n`` of the filesystem at sector ``start``: (exit code, output)."""
    proc = subprocess.run(["e2fsck", "-f", "-n", f"{path}?offset={start * SECTOR}"],
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def fs_size(path: Path, start: int = START) -> int:
    """The filesystem's size in bytes, from its superblock."""
    out = subprocess.run(["dumpe2fs", "-h", f"{path}?offset={start * SECTOR}"],
                         check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


def read_file(path: Path, name: str, start: int = START) -> bytes:
    return subprocess.run(["debugfs", "-R", f"cat /{name}", f"{path}?offset={start * SECTOR}"],
                          check=True, capture_output=True).stdout
