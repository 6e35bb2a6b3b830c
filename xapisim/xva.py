"""The XVA format: ``ova.xml`` and disks in 1 MiB tar members, as xapi writes and reads them.

An XVA is a tar (optionally gzip or zstd compressed) whose first member is
``ova.xml``: an XML-RPC struct ``{version, objects}`` where each object is
``{class, id, snapshot}``, ``id`` an export reference ``Ref:<n>`` and
``snapshot`` the record with every reference replaced by an export reference
or ``OpaqueRef:NULL`` (``export.ml``, ``importexport.ml``).  After it come
the disks, in the order of their export reference compared as strings: disk
``Ref:<n>`` is split into 1 MiB chunks ``Ref:<n>/<8-digit number>``, each
followed by its checksum member, ``.xxhash`` (XXH64 as 16 upper-case hex
digits, what xapi writes) or ``.checksum`` (SHA-1 hex, older exports).
Chunks of zeros are left out except the first and the last, and an importer
seeks over a gap in the numbering (``stream_vdi.ml``).

This module only encodes and decodes; ``xva_io`` holds the HTTP handlers
and the objects.
"""
from __future__ import annotations

import hashlib
import tarfile
import time
import xmlrpc.client
import zlib
from collections.abc import Iterator
from xml.parsers.expat import ExpatError

import xxhash
import zstandard

from .errors import XapiError
from .wire.xmlrpc import encode_value

OVA_XML = "ova.xml"
CHUNK = 1 << 20
EXPORT_VSN = 2
BLOCK = 512
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_OVA_XML = 64 << 20  # refuse a metadata member larger than this
ZERO_CHUNK = bytes(CHUNK)
ZERO_VIEW = memoryview(ZERO_CHUNK)


def is_zero(data) -> bool:
    """True if ``data`` (at most a chunk) is all zero bytes.

    Compared as ``bytes``: a memoryview comparison goes item by item.
    """
    b = data if isinstance(data, bytes) else bytes(data)
    return b == (ZERO_CHUNK if len(b) == CHUNK else bytes(len(b)))


class PrematureEof(Exception):
    """The stream ended inside the archive (xapi's ``End_of_file``)."""


# -- ova.xml -----------------------------------------------------------------
def header_xml(version: dict, objects: list[dict]) -> bytes:
    """``ova.xml``: the header as an XML-RPC value, as ocaml-rpc's encoder writes it."""
    return encode_value({"version": version, "objects": objects}).encode()


def parse_header(data: bytes) -> tuple[dict, list[dict]]:
    """The version struct and the objects of an ``ova.xml``; IMPORT_ERROR if it is not one."""
    wrapped = (b"<?xml version='1.0'?><methodResponse><params><param>" + data +
               b"</param></params></methodResponse>")
    try:
        (value,), _ = xmlrpc.client.loads(wrapped, use_builtin_types=False)
    except (ExpatError, ValueError, TypeError, IndexError, xmlrpc.client.Fault) as e:
        raise XapiError("IMPORT_ERROR", f"Xmlrpc.Parse_error: {e}"[:300]) from None
    if not isinstance(value, dict) or not isinstance(value.get("objects"), list) or \
            not isinstance(value.get("version"), dict):
        raise XapiError("IMPORT_ERROR", "Failure(\"header_of_rpc: malformed ova.xml\")")
    version = value["version"]
    for key in ("hostname", "date", "product_version", "product_brand", "build_number",
                "xapi_major", "xapi_minor"):
        if key not in version:
            raise XapiError("IMPORT_ERROR",
                            f"Importexport.Failure(\"Failed to find key '{key}' in version data\")")
    objects = []
    for obj in value["objects"]:
        if not (isinstance(obj, dict) and isinstance(obj.get("class"), str) and
                isinstance(obj.get("id"), str) and isinstance(obj.get("snapshot"), dict)):
            raise XapiError("IMPORT_ERROR", "Failure(\"obj_of_rpc: malformed object\")")
        objects.append(obj)
    return version, objects


def int_of(v) -> int:
    """An int the way ocaml-rpc reads one: typed or as a string of digits."""
    try:
        return int(v)
    except (TypeError, ValueError):
        raise XapiError("IMPORT_ERROR", f"Rpc.Runtime_error: expected int, got {v!r}"[:200]) \
            from None


# -- writing -----------------------------------------------------------------
def _member_header(name: str, size: int) -> bytes:
    """A POSIX ustar header for a regular file (what ``tarfile`` writes, built directly:
    ``TarInfo.tobuf`` costs more than hashing the 1 MiB chunk it describes)."""
    raw = name.encode()
    if len(raw) > 100:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        return info.tobuf(format=tarfile.USTAR_FORMAT)
    head = bytearray(BLOCK)
    head[0:len(raw)] = raw
    head[100:108] = b"0000644\0"
    head[108:116] = b"0000000\0"
    head[116:124] = b"0000000\0"
    head[124:136] = b"%011o\0" % size
    head[136:148] = b"%011o\0" % int(time.time())
    head[148:156] = b" " * 8
    head[156:157] = b"0"
    head[257:265] = b"ustar\x0000"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


class TarWriter:
    """Writes tar members straight to a file object (a socket, through an optional compressor)."""

    def __init__(self, out) -> None:
        self.out = out

    def member(self, name: str, data: bytes | memoryview) -> None:
        self.out.write(_member_header(name, len(data)))
        self.out.write(data)
        pad = -len(data) % BLOCK
        if pad:
            self.out.write(b"\0" * pad)

    def chunk(self, prefix: str, number: int, data: bytes | memoryview) -> None:
        """One disk chunk and its ``.xxhash`` companion."""
        name = f"{prefix}/{number:08d}"
        self.member(name, data)
        self.member(name + ".xxhash", xxhash.xxh64_hexdigest(data).upper().encode())

    def end(self) -> None:
        self.out.write(b"\0" * (2 * BLOCK))


class Compressed:
    """A writable file object that gzip- or zstd-compresses into ``out`` (``use_compression``)."""

    def __init__(self, out, algorithm: str) -> None:
        self.out = out
        if algorithm == "zstd":
            self._z = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def write(self, data) -> None:
        piece = self._z.compress(data)
        if piece:
            self.out.write(piece)

    def close(self) -> None:
        self.out.write(self._z.flush())


def compression_of(query_value: str | None) -> str | None:
    """``use_compression``: true/gzip → gzip, zstd → zstd, anything else none (export.ml)."""
    if query_value in ("true", "gzip"):
        return "gzip"
    if query_value == "zstd":
        return "zstd"
    return None


# -- reading -----------------------------------------------------------------
class Body:
    """A request body of known length, read exactly (``PrematureEof`` when it runs out)."""

    def __init__(self, rfile, length: int | None) -> None:
        self.rfile = rfile
        self.left = length

    def read(self, n: int) -> bytes:
        if self.left is not None:
            n = min(n, self.left)
        data = self.rfile.read(n) if n > 0 else b""
        if self.left is not None:
            self.left -= len(data)
        return data

    def drain(self, limit: int) -> None:
        """Read what is left (up to ``limit``) so the client sees the answer, not a reset."""
        while self.left and limit > 0:
            got = self.read(min(CHUNK, limit))
            if not got:
                return
            limit -= len(got)


class Decompressed:
    """Reads a gzip or zstd stream from a ``Body`` as plain bytes."""

    def __init__(self, body: Body, first: bytes) -> None:
        self.body = body
        if first.startswith(ZSTD_MAGIC):
            self._z = zstandard.ZstdDecompressor().decompressobj()
        else:
            self._z = zlib.decompressobj(47)
        self._pending = bytearray()
        self._feed(first)

    def _feed(self, data: bytes) -> None:
        # xapi pipes the body through gzip/zstd; when that fails its output just ends,
        # and the tar reader meets End_of_file (IMPORT_ERROR_PREMATURE_EOF)
        try:
            self._pending += self._z.decompress(data)
        except (zlib.error, zstandard.ZstdError):
            raise PrematureEof() from None

    def read(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self.body.read(CHUNK)
            if not data:
                break
            self._feed(data)
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out


def _read_exact(src, n: int) -> bytes:
    parts = []
    while n > 0:
        data = src.read(n)
        if not data:
            raise PrematureEof()
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


class TarReader:
    """Reads tar members one by one from a stream, without seeking or touching the filesystem."""

    def __init__(self, src) -> None:
        self.src = src
        self._pad = 0

    def next_header(self) -> tarfile.TarInfo | None:
        """The next member's header; None at the end-of-archive marker."""
        if self._pad:
            _read_exact(self.src, self._pad)
            self._pad = 0
        buf = _read_exact(self.src, BLOCK)
        if buf == bytes(BLOCK):
            return None
        try:
            info = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise XapiError("IMPORT_ERROR", f"Tar.Header.Checksum_mismatch: {e}"[:200]) from None
        if not info.isreg():
            raise XapiError("IMPORT_ERROR", f"Failure(\"not a regular file in the archive: "
                                            f"{info.name}\")"[:300])
        self._pad = -info.size % BLOCK
        return info

    def read_data(self, info: tarfile.TarInfo) -> bytes:
        return _read_exact(self.src, info.size)


def open_archive(body: Body) -> tuple[TarReader, bytes]:
    """The archive reader and the ``ova.xml`` bytes; compression is detected as xapi does.

    The first 512 bytes are tried as a tar header naming ``ova.xml``; if they
    are not one (even a good header of another file), the stream is
    decompressed (zstd if it starts with zstd's magic, gzip otherwise) and
    tried again; only then is a wrong first member IMPORT_ERROR_UNEXPECTED_FILE
    (import.ml ``with_open_archive``).
    """
    first = _read_exact(body, BLOCK)
    reader = None
    try:
        info = tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
        if info.name == OVA_XML:
            reader = TarReader(body)
            reader._pad = -info.size % BLOCK
    except tarfile.HeaderError:
        info = None
    if reader is None:
        src = Decompressed(body, first)
        reader = TarReader(src)
        info = reader.next_header()
        if info is None:
            raise PrematureEof()
    if info.name != OVA_XML:
        raise XapiError("IMPORT_ERROR_UNEXPECTED_FILE", OVA_XML, info.name)
    if info.size > MAX_OVA_XML:
        raise XapiError("IMPORT_ERROR", f"Failure(\"ova.xml of {info.size} bytes\")")
    return reader, reader.read_data(info)


def chunk_checksum(name: str, data: bytes) -> str:
    """The checksum of ``data`` in the form its companion member ``name`` says."""
    if name.endswith(".xxhash"):
        return xxhash.xxh64_hexdigest(data).upper()
    if name.endswith(".checksum"):
        return hashlib.sha1(data).hexdigest()
    raise XapiError("IMPORT_ERROR", f"Failure(\"Found unsupported checksum file: {name}\")"[:300])


def read_disk(reader: TarReader, prefix: str, size: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, data) of one disk's chunks, checking names, order and checksums.

    Follows ``Stream_vdi.recv_one``: chunks must carry the disk's prefix and
    increasing numbers; a gap is as many chunks of the first chunk's length;
    each chunk's checksum member must match.  Reading stops once ``size``
    bytes are accounted for.
    """
    offset = 0
    last = -1
    first_len = -1
    while offset < size:
        info = reader.next_header()
        if info is None:
            raise PrematureEof()
        name = info.name
        if not name.startswith(prefix + "/"):
            raise XapiError("IMPORT_ERROR", 'Stream_vdi.Failure("Invalid XVA file")')
        suffix = name[len(prefix) + 1:]
        if not suffix.isdigit() or int(suffix) <= last:
            raise XapiError("IMPORT_ERROR", 'Stream_vdi.Failure("Invalid XVA file")')
        if first_len < 0:
            first_len = info.size
        if info.size > CHUNK:
            raise XapiError("IMPORT_ERROR", f'Stream_vdi.Failure("chunk {name} larger than '
                                            f'{CHUNK} bytes")')
        number = int(suffix)
        offset += first_len * (number - last - 1)
        data = reader.read_data(info)
        if offset + len(data) > size:
            raise XapiError("VDI_IO_ERROR", f"chunk {name} lies beyond the end of the disk")
        csum = reader.next_header()
        if csum is None:
            raise PrematureEof()
        expected = reader.read_data(csum).decode("ascii", "replace")
        if csum.name not in (name + ".xxhash", name + ".checksum"):
            raise XapiError("IMPORT_ERROR", "Stream_vdi.Failure(\"Expected to find a supported "
                                            f"inline checksum file, instead found {csum.name}\")")
        actual = chunk_checksum(csum.name, data)
        if actual != expected:
            raise XapiError("IMPORT_ERROR", f"Stream_vdi.Invalid_checksum(\"Block {name} checksum "
                                            f"failed: original = {expected}; recomputed = "
                                            f"{actual}\")"[:400])
        yield offset, data
        offset += len(data)
        last = number
