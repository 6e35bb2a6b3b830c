"""Reading and writing the blocks of a dynamic VHD file in place.

File SRs keep each VDI as a dynamic VHD (made by ``qemu-img``).  Raw imports
and exports go through this module instead of converting whole files: a
write lands in its 2 MiB block (allocated at the end of the file on first
use, never for an all-zero block that is not allocated yet), and a read
returns the block's data, or zeros for a block or sector that holds none.
The layout is the published VHD format (Microsoft's Virtual Hard Disk Image
Format Specification): a footer copy at offset 0, the dynamic header it
points to, the block allocation table (BAT, big-endian sector numbers,
0xFFFFFFFF for none), and per block a sector bitmap followed by the data;
the footer is repeated at the end of the file.  Differencing disks are not
handled here.
"""
from __future__ import annotations

import os
import struct

SECTOR = 512
UNUSED = 0xFFFFFFFF
FOOTER = struct.Struct(">8sIIQI4sI4sQQ4sII16sB427x")  # 512 bytes
DYN_HEADER = struct.Struct(">8sQQIIII")  # the fields used here, at the start of the 1024


class VhdError(Exception):
    pass


class DynamicVhd:
    """An open dynamic VHD; ``write_at``/``read_at`` work on the virtual disk's bytes."""

    def __init__(self, path: str, writable: bool = False) -> None:
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            self._load()
        except BaseException:
            os.close(self.fd)
            raise

    def _load(self) -> None:
        footer = os.pread(self.fd, SECTOR, 0)
        if footer[:8] != b"conectix":
            raise VhdError("not a VHD file (no footer copy)")
        f = FOOTER.unpack(footer)
        self.footer = footer
        self.size = f[9]  # current size
        disk_type = f[11]
        if disk_type != 3:
            raise VhdError(f"VHD disk type {disk_type} is not dynamic")
        header = os.pread(self.fd, DYN_HEADER.size, f[3])
        cookie, _, table_offset, _, entries, block_size, _ = DYN_HEADER.unpack(header)
        if cookie != b"cxsparse":
            raise VhdError("dynamic header missing")
        self.table_offset = table_offset
        self.entries = entries
        self.block_size = block_size
        self.bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
        raw = os.pread(self.fd, entries * 4, table_offset)
        self.bat = list(struct.unpack(f">{entries}I", raw))
        self.end = os.fstat(self.fd).st_size - SECTOR  # where the trailing footer starts
        self._zero = bytes(block_size)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> DynamicVhd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ write
    def _allocate(self, index: int, whole_block: bool) -> int:
        """Add block ``index`` at the end of the file (zero-filled unless it is about to be written)."""
        offset = self.end
        os.pwrite(self.fd, b"\xff" * self.bitmap_size, offset)
        if not whole_block:
            os.pwrite(self.fd, self._zero, offset + self.bitmap_size)
        self.end = offset + self.bitmap_size + self.block_size
        os.pwrite(self.fd, self.footer, self.end)
        self.bat[index] = offset // SECTOR
        os.pwrite(self.fd, struct.pack(">I", self.bat[index]), self.table_offset + 4 * index)
        return offset

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise VhdError("write beyond the end of the virtual disk")
        view = memoryview(data)
        while view:
            index, within = divmod(offset, self.block_size)
            n = min(len(view), self.block_size - within)
            piece = view[:n]
            if self.bat[index] == UNUSED:
                if piece == self._zero[:n]:
                    offset += n
                    view = view[n:]
                    continue  # zeros into a block with no data: nothing to store
                base = self._allocate(index, whole_block=(n == self.block_size))
            else:
                base = self.bat[index] * SECTOR
                self._fill_bitmap(base)
            os.pwrite(self.fd, piece, base + self.bitmap_size + within)
            offset += n
            view = view[n:]

    def _fill_bitmap(self, base: int) -> None:
        bitmap = os.pread(self.fd, self.bitmap_size, base)
        if bitmap.count(0xFF) != len(bitmap):
            # sectors the bitmap says are absent read as zero: make that true, then mark all present
            data = bytearray(self.read_block(base))
            os.pwrite(self.fd, bytes(data), base + self.bitmap_size)
            os.pwrite(self.fd, b"\xff" * self.bitmap_size, base)

    # ------------------------------------------------------------- read
    def read_block(self, base: int) -> bytes:
        """The data of the block whose bitmap starts at ``base``, absent sectors zeroed."""
        bitmap = os.pread(self.fd, self.bitmap_size, base)
        data = os.pread(self.fd, self.block_size, base + self.bitmap_size)
        if bitmap.count(0xFF) == len(bitmap):
            return data
        out = bytearray(data)
        for sector in range(self.block_size // SECTOR):
            if not bitmap[sector // 8] & (0x80 >> (sector % 8)):
                out[sector * SECTOR:(sector + 1) * SECTOR] = bytes(SECTOR)
        return bytes(out)

    def blocks(self):
        """Yield the virtual disk's contents block by block (the last one trimmed)."""
        for index in range(-(-self.size // self.block_size)):
            n = min(self.block_size, self.size - index * self.block_size)
            if self.bat[index] == UNUSED:
                yield self._zero[:n]
            else:
                yield self.read_block(self.bat[index] * SECTOR)[:n]
