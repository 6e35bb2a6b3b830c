"""Reading and writing VHD files in place: dynamic disks and differencing chains.

File SRs keep each VDI as a VHD (dynamic ones made by ``qemu-img``).  Raw
imports and exports go through this module instead of converting whole
files: a write lands in its 2 MiB block (allocated at the end of the file on
first use, never for an all-zero block that is not allocated yet), and a
read returns the block's data, or zeros for a block or sector that holds
none.  The layout is the published VHD format (Microsoft's Virtual Hard Disk
Image Format Specification): a footer copy at offset 0, the dynamic header
it points to, the block allocation table (BAT, big-endian sector numbers,
0xFFFFFFFF for none), and per block a sector bitmap followed by the data;
the footer is repeated at the end of the file.

A differencing disk (type 4) names its parent in the dynamic header (the
parent's unique id, its file name in UTF-16BE, and a "MacX" locator holding
a ``file://./<name>`` URL relative to the child's directory, as blktap's
``vhd-util`` writes on Linux); sectors absent from the child's bitmaps read
through to the parent.  Writing into a block the child does not hold yet
copies the block up from the parent first.  blktap keeps a "hidden" flag in
the first reserved byte of the footer (offset 85); storage managers hide the
parents of a chain, and so does this module's ``set_hidden``.
"""
from __future__ import annotations

import functools
import os
import struct
import subprocess
import time
import uuid as uuidlib

SECTOR = 512
UNUSED = 0xFFFFFFFF
FOOTER = struct.Struct(">8sIIQI4sI4sQQ4sII16sB427x")  # 512 bytes
DYN_HEADER = struct.Struct(">8sQQIIII")  # the fields used here, at the start of the 1024
HEADER_SIZE = 1024
DYNAMIC, DIFFERENCING = 3, 4
HIDDEN_OFFSET = 85
FOOTER_CHECKSUM = 64
HEADER_CHECKSUM = 36
PARENT_UUID, PARENT_TIME, PARENT_NAME, LOCATORS = 40, 56, 64, 576
LOCATOR = struct.Struct(">4sIIIQ")  # code, space, length, reserved, offset
MACX = b"MacX"
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the zero of VHD timestamps
MAX_CHAIN = 30  # blktap refuses deeper chains; so does this reader


class VhdError(Exception):
    pass


@functools.lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    """A block of zeros, shared: every open VHD needs one and they are 2 MiB each."""
    return bytes(size)


def checksum(data: bytes | bytearray, field: int) -> int:
    """The VHD checksum: one's complement of the byte sum, the checksum field counted as 0."""
    total = sum(data) - sum(data[field:field + 4])
    return ~total & 0xFFFFFFFF


def _with_checksum(data: bytearray, field: int) -> bytes:
    data[field:field + 4] = b"\0\0\0\0"
    data[field:field + 4] = struct.pack(">I", checksum(data, field))
    return bytes(data)


class DynamicVhd:
    """An open dynamic or differencing VHD; ``write_at``/``blocks`` work on the virtual disk."""

    def __init__(self, path: str, writable: bool = False, _depth: int = 0) -> None:
        self.path = path
        self.parent: DynamicVhd | None = None
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            self._load()
            if self.disk_type == DIFFERENCING:
                if _depth >= MAX_CHAIN:
                    raise VhdError(f"VHD chain deeper than {MAX_CHAIN} at {path}")
                self.parent = DynamicVhd(self.parent_path(), False, _depth + 1)
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        footer = os.pread(self.fd, SECTOR, 0)
        if footer[:8] != b"conectix":
            raise VhdError(f"{self.path}: not a VHD file (no footer copy)")
        f = FOOTER.unpack(footer)
        self.footer = footer
        self.size = f[9]  # current size
        self.disk_type = f[11]
        self.unique_id = f[13]
        self.timestamp = f[4]
        if self.disk_type not in (DYNAMIC, DIFFERENCING):
            raise VhdError(f"{self.path}: VHD disk type {self.disk_type} is neither dynamic "
                           "nor differencing")
        self.header_offset = f[3]
        self.header = os.pread(self.fd, HEADER_SIZE, f[3])
        cookie, _, table_offset, _, entries, block_size, _ = DYN_HEADER.unpack_from(self.header)
        if cookie != b"cxsparse":
            raise VhdError(f"{self.path}: dynamic header missing")
        self.table_offset = table_offset
        self.entries = entries
        self.block_size = block_size
        self.bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
        raw = os.pread(self.fd, entries * 4, table_offset)
        self.bat = list(struct.unpack(f">{entries}I", raw))
        self.end = os.fstat(self.fd).st_size - SECTOR  # where the trailing footer starts
        self._zero = _zeros(block_size)

    @property
    def hidden(self) -> bool:
        return self.footer[HIDDEN_OFFSET] != 0

    def parent_name(self) -> str:
        """The parent's file name: the MacX locator's URL if there is one, else the unicode name."""
        for i in range(8):
            code, _, length, _, offset = LOCATOR.unpack_from(self.header, LOCATORS + 24 * i)
            if code == MACX and length:
                url = os.pread(self.fd, length, offset).decode("utf-8", "replace")
                return url[len("file://"):] if url.startswith("file://") else url
        name = self.header[PARENT_NAME:PARENT_NAME + 512].decode("utf-16-be", "replace")
        return name.split("\0", 1)[0]

    def parent_path(self) -> str:
        name = self.parent_name()
        if not name:
            raise VhdError(f"{self.path}: differencing disk names no parent")
        path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.path)), name))
        if not os.path.exists(path):
            raise VhdError(f"{self.path}: parent {path} not found")
        return path

    def chain(self) -> list[DynamicVhd]:
        """This disk and its ancestors, leaf first."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def close(self) -> None:
        if self.parent is not None:
            self.parent.close()
        os.close(self.fd)

    def __enter__(self) -> DynamicVhd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ write
    def _allocate(self, index: int, initial: bytes | None) -> int:
        """Add block ``index`` at the end of the file holding ``initial`` (None: about to be written)."""
        offset = self.end
        os.pwrite(self.fd, b"\xff" * self.bitmap_size, offset)
        if initial is not None:
            os.pwrite(self.fd, initial.ljust(self.block_size, b"\0"), offset + self.bitmap_size)
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
                below = self.parent.block_data(index) if self.parent else None
                if below is None and piece == self._zero[:n]:
                    offset += n
                    view = view[n:]
                    continue  # zeros into a block with no data: nothing to store
                whole = n == self.block_size
                base = self._allocate(index, None if whole else (below or self._zero))
            else:
                base = self.bat[index] * SECTOR
                self._fill_bitmap(index, base)
            os.pwrite(self.fd, piece, base + self.bitmap_size + within)
            offset += n
            view = view[n:]

    def _fill_bitmap(self, index: int, base: int) -> None:
        bitmap = os.pread(self.fd, self.bitmap_size, base)
        if bitmap.count(0xFF) != len(bitmap):
            # sectors the bitmap says are absent read as zero or from the parent: store that
            # in this block, then mark every sector present
            os.pwrite(self.fd, self.block_data(index), base + self.bitmap_size)
            os.pwrite(self.fd, b"\xff" * self.bitmap_size, base)

    # ------------------------------------------------------------- read
    def block_data(self, index: int) -> bytes | None:
        """Block ``index`` as the guest sees it, or None if no disk of the chain holds any of it."""
        if index >= self.entries:
            return None
        entry = self.bat[index]
        if entry == UNUSED:
            return self.parent.block_data(index) if self.parent else None
        base = entry * SECTOR
        bitmap = os.pread(self.fd, self.bitmap_size, base)
        data = os.pread(self.fd, self.block_size, base + self.bitmap_size)
        if bitmap.count(0xFF) == len(bitmap):
            return data
        under = (self.parent.block_data(index) if self.parent else None) or self._zero
        out = bytearray(data)
        for sector in range(self.block_size // SECTOR):
            if not bitmap[sector // 8] & (0x80 >> (sector % 8)):
                out[sector * SECTOR:(sector + 1) * SECTOR] = under[sector * SECTOR:(sector + 1) * SECTOR]
        return bytes(out)

    def holds(self, index: int) -> bool:
        """True if some disk of the chain has block ``index`` allocated (without reading it)."""
        return any(index < d.entries and d.bat[index] != UNUSED for d in self.chain())

    def block_count(self) -> int:
        return -(-self.size // self.block_size)

    def allocated(self):
        """Yield (offset, data) of each block some disk of the chain holds, in order."""
        for index in range(self.block_count()):
            if self.holds(index):
                n = min(self.block_size, self.size - index * self.block_size)
                yield index * self.block_size, self.block_data(index)[:n]

    def blocks(self):
        """Yield the virtual disk's contents block by block (the last one trimmed)."""
        for index in range(self.block_count()):
            n = min(self.block_size, self.size - index * self.block_size)
            data = self.block_data(index)
            yield self._zero[:n] if data is None else data[:n]


# ------------------------------------------------------------ editing headers
def _rewrite_footers(fd: int, footer: bytes) -> None:
    os.pwrite(fd, footer, 0)
    os.pwrite(fd, footer, os.fstat(fd).st_size - SECTOR)


def set_hidden(path: str, hidden: bool) -> None:
    with DynamicVhd(path, writable=True) as vhd:
        footer = bytearray(vhd.footer)
        footer[HIDDEN_OFFSET] = 1 if hidden else 0
        _rewrite_footers(vhd.fd, _with_checksum(footer, FOOTER_CHECKSUM))


def set_parent(path: str, parent: str) -> None:
    """Point the differencing disk at ``path`` to ``parent`` (what ``vhd-util modify -p`` does)."""
    with DynamicVhd(parent) as p:
        parent_id, parent_size = p.unique_id, p.size
    fd = os.open(path, os.O_RDWR)
    try:
        footer = os.pread(fd, SECTOR, 0)
        if footer[:8] != b"conectix":
            raise VhdError(f"{path}: not a VHD file")
        f = FOOTER.unpack(footer)
        if f[11] != DIFFERENCING:
            raise VhdError(f"{path} is not a differencing disk")
        if parent_size > f[9]:
            raise VhdError(f"{parent} is larger than its child {path}")
        _write_parent(fd, f[3], path, parent, parent_id)
    finally:
        os.close(fd)


def _write_parent(fd: int, header_offset: int, path: str, parent: str, parent_id: bytes) -> None:
    header = bytearray(os.pread(fd, HEADER_SIZE, header_offset))
    name = os.path.relpath(os.path.abspath(parent), os.path.dirname(os.path.abspath(path)))
    header[PARENT_UUID:PARENT_UUID + 16] = parent_id
    header[PARENT_TIME:PARENT_TIME + 4] = struct.pack(
        ">I", max(0, int(os.stat(parent).st_mtime) - VHD_EPOCH))
    encoded = os.path.basename(name).encode("utf-16-be")[:510]
    header[PARENT_NAME:PARENT_NAME + 512] = encoded.ljust(512, b"\0")
    url = f"file://./{name}".encode()
    # reuse the MacX locator's space if it is big enough, else put the URL at the end of the file
    slot, offset = 0, None
    for i in range(8):
        code, space, _, _, where = LOCATOR.unpack_from(header, LOCATORS + 24 * i)
        if code == MACX:
            slot = i
            if space * SECTOR >= len(url):
                offset = where
            break
    space = -(-len(url) // SECTOR)
    if offset is None:
        end = os.fstat(fd).st_size - SECTOR
        footer = os.pread(fd, SECTOR, end)
        offset = end
        os.pwrite(fd, bytes(space * SECTOR), offset)
        os.pwrite(fd, footer, offset + space * SECTOR)
    os.pwrite(fd, url.ljust(space * SECTOR, b"\0"), offset)
    LOCATOR.pack_into(header, LOCATORS + 24 * slot, MACX, space, len(url), 0, offset)
    os.pwrite(fd, _with_checksum(header, HEADER_CHECKSUM), header_offset)


def create_dynamic(path: str, size: int) -> None:
    """A new empty dynamic VHD of ``size`` bytes, made by ``qemu-img`` (``vhd-util create``)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
                    path, str(size)], check=True)


def create_child(path: str, parent: str, size: int | None = None) -> None:
    """A new differencing disk at ``path`` over ``parent`` (``vhd-util snapshot``): an empty
    dynamic disk of ``size`` (the parent's by default) whose footers are turned into a
    differencing disk's."""
    with DynamicVhd(parent) as p:
        parent_size, parent_id = p.size, p.unique_id
    create_dynamic(path, size or parent_size)
    fd = os.open(path, os.O_RDWR)
    try:
        footer = bytearray(os.pread(fd, SECTOR, 0))
        footer[60:64] = struct.pack(">I", DIFFERENCING)
        footer[68:84] = uuidlib.uuid4().bytes
        footer[24:28] = struct.pack(">I", max(0, int(time.time()) - VHD_EPOCH))
        _rewrite_footers(fd, _with_checksum(footer, FOOTER_CHECKSUM))
        _write_parent(fd, FOOTER.unpack(bytes(footer))[3], path, parent, parent_id)
    finally:
        os.close(fd)


def snapshot_target(parent: str) -> str:
    """The VHD a new snapshot of ``parent`` links to, as ``vhd-util snapshot`` picks it: the
    first of ``parent`` and its ancestors that is not an empty differencing disk (one with no
    block allocated), so snapshots of an unchanged disk do not deepen its chain."""
    target = parent
    while True:
        with DynamicVhd(target) as vhd:
            if vhd.parent is None or any(entry != UNUSED for entry in vhd.bat):
                return target
            target = vhd.parent.path


def depth(path: str) -> int:
    """How many VHDs the chain of ``path`` holds (``path`` included)."""
    with DynamicVhd(path) as vhd:
        return len(vhd.chain())


def coalesce_parent(path: str) -> str:
    """Fold the parent of the differencing disk at ``path`` into it; return the parent's path.

    What the storage manager's garbage collector does to a base copy with a
    single child: afterwards ``path`` holds what its parent held under its
    own data and names its grandparent as parent (or is a dynamic disk if
    there was none), keeping its unique id, so disks below it stay valid, and
    its hidden flag.  The caller deletes the parent's file.  The new file is
    written beside ``path`` and renamed over it, so a failure changes nothing.
    """
    tmp = path + ".coalescing"
    with DynamicVhd(path) as child:
        if child.parent is None:
            raise VhdError(f"{path} has no parent to coalesce")
        parent = child.parent
        grandparent = parent.parent.path if parent.parent else None
        footer = bytearray(child.footer)
        try:
            if grandparent:
                create_child(tmp, grandparent)
            else:
                create_dynamic(tmp, child.size)
            with DynamicVhd(tmp, writable=True) as out:
                for index in range(child.block_count()):
                    # blocks either layer holds; the grandparent's stay where they are
                    if child.bat[index] != UNUSED or parent.bat[index] != UNUSED:
                        start = index * child.block_size
                        out.write_at(start, child.block_data(index)[:child.size - start])
                new_footer = bytearray(out.footer)
                new_footer[68:84] = footer[68:84]  # the unique id children point at
                new_footer[HIDDEN_OFFSET] = footer[HIDDEN_OFFSET]
                _rewrite_footers(out.fd, _with_checksum(new_footer, FOOTER_CHECKSUM))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return parent.path


def check(path: str, parents: bool = False) -> list[str]:
    """Problems found in the VHD at ``path``; [] if valid.

    With ``parents``, a differencing disk's parent must exist and be the disk
    it was made from, and is checked in turn (``vhd-util check -p``).
    """
    problems: list[str] = []
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return [f"cannot open {path}: {e.strerror}"]
    try:
        size = os.fstat(fd).st_size
        footer = os.pread(fd, SECTOR, size - SECTOR) if size >= SECTOR else b""
        if footer[:8] != b"conectix":
            return ["primary footer invalid: invalid cookie"]
        f = FOOTER.unpack(footer)
        if f[12] != checksum(footer, FOOTER_CHECKSUM):
            problems.append("primary footer invalid: invalid checksum")
        if f[4] > int(time.time()) - VHD_EPOCH + 60:
            problems.append("primary footer invalid: creation time in future")
        if os.pread(fd, SECTOR, 0) != footer:
            problems.append("backup footer invalid: does not match the primary footer")
        if f[11] not in (DYNAMIC, DIFFERENCING):
            return problems + [f"primary footer invalid: disk type {f[11]} is not dynamic or "
                               "differencing"]
        header = os.pread(fd, HEADER_SIZE, f[3])
        if header[:8] != b"cxsparse":
            return problems + ["header invalid: invalid cookie"]
        if struct.unpack_from(">I", header, HEADER_CHECKSUM)[0] != checksum(header, HEADER_CHECKSUM):
            problems.append("header invalid: invalid checksum")
        _, _, table, _, entries, block, _ = DYN_HEADER.unpack_from(header)
        if entries * block < f[9]:
            problems.append("header invalid: block table too small for the disk size")
        bat = struct.unpack(f">{entries}I", os.pread(fd, entries * 4, table))
        limit = (size - SECTOR) // SECTOR
        for i, entry in enumerate(bat):
            if entry != UNUSED and entry + (block // SECTOR) > limit:
                problems.append(f"bat invalid: block {i} lies beyond the end of the file")
                break
    finally:
        os.close(fd)
    if parents and not problems and f[11] == DIFFERENCING:
        try:
            with DynamicVhd(path) as vhd:
                parent_path = vhd.parent_path()
                if vhd.parent.unique_id != header[PARENT_UUID:PARENT_UUID + 16]:
                    problems.append(f"parent invalid: {parent_path} is not the parent this disk "
                                    "was made from (unique id differs)")
        except VhdError as e:
            problems.append(f"parent invalid: {e}")
        if not problems:
            problems += check(parent_path, parents=True)
    return problems


def _geometry(size: int) -> bytes:
    """Cylinders, heads, sectors per track for ``size`` bytes (the VHD specification's algorithm)."""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return struct.pack(">HBB", cth // heads, heads, spt)


def resize(path: str, size: int) -> None:
    """Grow the virtual disk of the VHD at ``path`` in place, parents untouched (``vhd-util resize``).

    A block table too small for the new size is rewritten at the end of the
    file (blocks keep their absolute sector numbers, so nothing else moves).
    """
    with DynamicVhd(path, writable=True) as vhd:
        if size < vhd.size:
            raise VhdError(f"{path}: shrinking a VHD is not supported")
        fd = vhd.fd
        entries = -(-size // vhd.block_size)
        header = bytearray(vhd.header)
        if entries > vhd.entries:
            table = struct.pack(f">{entries}I", *(vhd.bat + [UNUSED] * (entries - vhd.entries)))
            table = table.ljust(-(-len(table) // SECTOR) * SECTOR, b"\xff")
            offset = vhd.end
            os.pwrite(fd, table, offset)
            header[16:24] = struct.pack(">Q", offset)
            header[28:32] = struct.pack(">I", entries)
            os.pwrite(fd, _with_checksum(header, HEADER_CHECKSUM), vhd.header_offset)
            os.ftruncate(fd, offset + len(table) + SECTOR)  # room for the trailing footer
        footer = bytearray(vhd.footer)
        footer[48:56] = struct.pack(">Q", size)
        footer[56:60] = _geometry(size)
        _rewrite_footers(fd, _with_checksum(footer, FOOTER_CHECKSUM))
