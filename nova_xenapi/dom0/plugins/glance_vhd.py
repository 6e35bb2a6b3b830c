#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: VHD chains between Glance (API v2) and a file SR, for direct_vhd.

``download_vhd`` streams ``GET <endpoint>/v2/images/<id>/file`` (a tar of
``0.vhd`` .. ``N.vhd``, leaf first, each the parent of the one before, gzip
allowed) into a staging directory inside the SR, checks the Content-MD5
Glance sends, renames the files to the caller's UUIDs, relinks each to its
parent with ``vhd-util modify``, marks the parents hidden, checks the whole
chain with ``vhd-util check -p`` and only then moves it into the SR.  It
returns JSON ``{"root": {"uuid": ...}, "vdis": [leaf, ..., base]}``; the
caller runs ``SR.scan`` to make VDIs of them.

``upload_vhd`` sends the chain of VHDs named by ``vdi_uuids`` (leaf first) to
``PUT <endpoint>/v2/images/<id>/file`` as the same kind of tar, in HTTP
chunked encoding.  The image record (disk_format vhd, container_format ovf)
is the caller's to set through Glance's API.

Both talk HTTP or HTTPS (certificates checked against the dom0's trust
store) and pass ``token`` as X-Auth-Token; the token never appears in an
error.  Arguments are checked: UUIDs, the endpoint's scheme and form, and no
tar member other than ``<n>.vhd`` regular files; nothing is left in the SR
after a failure.
"""

import gzip
import hashlib
import http.client
import json
import lzma
import os
import queue
import re
import shutil
import ssl
import struct
import tarfile
import tempfile
import threading
import urllib.parse
import zlib

import dom0_pluginlib
import dom0_vhdchain
import XenAPIPlugin

_fail = dom0_vhdchain.fail

CHUNK = 1 << 20
TIMEOUT = 300
MAX_CHAIN = dom0_vhdchain.MAX_CHAIN
_MEMBER = re.compile(r"\A(?:\./)?([0-9]{1,2})\.vhd\Z")
_TOKEN = re.compile(r"\A[\x21-\x7e]{0,8192}\Z")  # visible ASCII: no header injection


def _endpoint(args):
    value = dom0_pluginlib.arg(args, "endpoint")
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment \
            or any(c in value for c in "\r\n \t"):
        dom0_pluginlib.invalid("endpoint", value, "not an http(s)://host[:port][/path] URL")
    try:
        _ = url.port
    except ValueError:
        dom0_pluginlib.invalid("endpoint", value, "bad port")
    return url


def _token(args):
    token = args.get("token", "")
    if not _TOKEN.match(token):
        dom0_pluginlib.invalid("token", "<hidden>", "not a printable ASCII token")
    return token


def _connect(url):
    if url.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=TIMEOUT,
                                           context=context)
    return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=TIMEOUT)


def _image_path(url, image_id):
    return url.path.rstrip("/") + f"/v2/images/{image_id}/file"


def _check_http(resp, image_id):
    if resp.status in (401, 403):
        _fail("GLANCE_UNAUTHORIZED", image_id, resp.status)
    if resp.status == 404:
        _fail("GLANCE_IMAGE_NOT_FOUND", image_id)
    if resp.status >= 300:
        body = resp.read(300).decode("utf-8", "replace")
        _fail("GLANCE_HTTP_ERROR", image_id, resp.status, " ".join(body.split()))


class _Md5Reader:
    """The response body, hashed as it is read by a second thread (hashlib releases the GIL, so
    the MD5 runs alongside the extraction instead of adding to it)."""

    def __init__(self, resp):
        self.resp = resp
        self.md5 = hashlib.md5()
        self.count = 0
        self._queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._hash)
        self._thread.daemon = True
        self._thread.start()

    def _hash(self):
        while True:
            data = self._queue.get()
            if data is None:
                return
            self.md5.update(data)

    def read(self, n=-1):
        data = self.resp.read(n)
        if data:
            self._queue.put(data)
        self.count += len(data)
        return data

    def hexdigest(self):
        self._queue.put(None)
        self._thread.join()
        return self.md5.hexdigest()


class _Prefixed:
    """A reader giving back the bytes already taken from the head of ``reader`` first."""

    def __init__(self, head, reader):
        self.head = head
        self.reader = reader

    def read(self, n=-1):
        if self.head:
            if n < 0 or n >= len(self.head):
                data, self.head = self.head, b""
                return data + (self.reader.read(n - len(data)) if n > len(data) else b"")
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.reader.read(n)


_COMPRESSED = (b"\x1f\x8b", b"BZ", b"\xfd7")  # gzip, bzip2 and xz magic


def _read_exactly(body, n):
    data = body.read(n)
    if len(data) < n:
        raise EOFError("the tar ends inside a member")
    return data


def _pax_records(data):
    """The keywords of a pax extended header (``"<len> <key>=<value>\n"`` records)."""
    out = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        length, _, rest = data[pos:pos + 32].partition(b" ")
        if not length.isdigit() or int(length) <= 0:
            raise tarfile.ReadError("invalid pax header")
        record = data[pos:pos + int(length)]
        key, _, value = record.partition(b" ")[2].rstrip(b"\n").partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += int(length)
    return out


def _tar_members(body):
    """(TarInfo, reader of its data) for each member of an uncompressed tar stream.

    The headers are tarfile's (``TarInfo.frombuf``: checksums, base-256 sizes);
    the data goes straight from ``body`` to the caller, which tarfile's stream
    mode would copy three times more through its own buffers.  pax extended
    headers (``size``, ``path``) and GNU long names apply to the next member,
    as tarfile applies them; other special members are yielded as they are,
    for the caller to refuse.
    """
    pax = {}
    while True:
        block = _read_exactly(body, tarfile.BLOCKSIZE)
        if block == tarfile.NUL * tarfile.BLOCKSIZE:
            return
        info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK):
            data = _read_exactly(body, info.size)
            _skip_padding(body, info.size)
            if info.type == tarfile.XHDTYPE:
                pax = _pax_records(data)
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                pax["path"] = data.rstrip(b"\0").decode(tarfile.ENCODING, "surrogateescape")
            continue
        if "size" in pax:
            if not pax["size"].isdigit():
                raise tarfile.ReadError("invalid pax size")
            info.size = int(pax["size"])
        if "path" in pax:
            info.name = pax["path"]
        if any(key.startswith("GNU.sparse") for key in pax):
            info.type = tarfile.GNUTYPE_SPARSE  # its data is laid out otherwise: refused below
        pax = {}
        yield info
        if info.isreg():
            _skip_padding(body, info.size)


def _skip_padding(body, size):
    _read_exactly(body, -size % tarfile.BLOCKSIZE)


def _vhd_bound(image_id, head, max_virtual_size):
    """The most bytes a VHD file whose footer copy is ``head`` can hold: its virtual size, a
    sector of bitmap per 128 KiB block at worst, its BAT and metadata. A member longer than that
    (a gzip bomb of zeros, say) is refused before it fills the SR; so is a VHD whose virtual
    size is over ``max_virtual_size``."""
    if len(head) < 512 or head[:8] != b"conectix":
        _fail("IMAGE_INVALID_VHD", image_id, "a member does not start with a VHD footer")
    (size,) = struct.unpack(">Q", head[48:56])
    if max_virtual_size is not None and size > max_virtual_size:
        _fail("IMAGE_TOO_LARGE", image_id, size, max_virtual_size)
    return size + size // 256 + 8 * 1024 * 1024


def _copy_member(body, size, out):
    left = size
    while left:
        data = _read_exactly(body, min(CHUNK, left))
        out.write(data)
        left -= len(data)


def _receive(resp, staging, image_id, max_virtual_size=None):
    """Extract the ``<n>.vhd`` members of the tar stream (gzip allowed) into ``staging``;
    their count."""
    body = _Md5Reader(resp)
    seen = set()
    try:
        head = body.read(2)
        if head in _COMPRESSED:  # tarfile's stream mode decompresses
            tar = tarfile.open(fileobj=_Prefixed(head, body), mode="r|*", bufsize=CHUNK)
            members = ((m, tar.extractfile(m)) for m in tar)
        else:
            tar = None
            members = ((m, None) for m in _tar_members(_Prefixed(head, body)))
        for member, source in members:
            m = _MEMBER.match(member.name)
            if not m or not member.isreg() or member.type == tarfile.GNUTYPE_SPARSE:
                _fail("IMAGE_BAD_MEMBER", image_id, member.name[:80])
            number = int(m.group(1))
            if number in seen or number >= MAX_CHAIN:
                _fail("IMAGE_BAD_MEMBER", image_id, member.name[:80])
            seen.add(number)
            free = os.statvfs(staging)
            if member.size > free.f_bavail * free.f_frsize:
                _fail("SR_FULL", member.size, free.f_bavail * free.f_frsize)
            head = (source.read(min(512, member.size)) if source is not None
                    else _read_exactly(body, min(512, member.size)))
            if member.size > _vhd_bound(image_id, head, max_virtual_size):
                _fail("IMAGE_INVALID_VHD", image_id,
                      f"{member.name[:80]} is larger than a VHD of its virtual size can be")
            with open(os.path.join(staging, f"{number}.vhd"), "wb") as out:
                out.write(head)
                if source is not None:
                    shutil.copyfileobj(source, out, CHUNK)
                else:
                    _copy_member(body, member.size - len(head), out)
        if tar is not None:
            tar.close()
        while body.read(CHUNK):  # the tar's trailing padding counts for the checksum
            pass
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        _fail("IMAGE_NOT_A_TAR", image_id, str(e)[:200])
    expected = resp.getheader("Content-MD5")
    got = body.hexdigest()
    if expected and expected != got:
        _fail("IMAGE_CHECKSUM_MISMATCH", image_id, expected, got)
    if not seen or seen != set(range(len(seen))):
        _fail("IMAGE_BAD_CHAIN", image_id, f"expected 0.vhd .. N.vhd, got {len(seen)} member(s)")
    return len(seen)


def _transfer_args(args):
    """The arguments both directions take: image id, Glance endpoint, token, SR directory."""
    return (dom0_vhdchain.uuid_arg(dom0_pluginlib.arg(args, "image_id"), "image_id"),
            _endpoint(args), _token(args), dom0_vhdchain.sr_path(args))


def _max_virtual_size(args):
    """Optional ``max_virtual_size``: bytes no VHD of the image may exceed (the flavor's disk)."""
    if "max_virtual_size" not in args:
        return None
    return dom0_pluginlib.int_arg(args, "max_virtual_size", 1, 1 << 50)


def download_vhd(session, args):
    image_id, url, token, sr_path = _transfer_args(args)
    uuids = dom0_vhdchain.uuids_arg(args, "uuids")
    staging = tempfile.mkdtemp(prefix=".nova-staging-", dir=sr_path)
    try:
        conn = _connect(url)
        try:
            headers = {"X-Auth-Token": token} if token else {}
            conn.request("GET", _image_path(url, image_id), headers=headers)
            resp = conn.getresponse()
            _check_http(resp, image_id)
            count = _receive(resp, staging, image_id, _max_virtual_size(args))
        except (OSError, http.client.HTTPException) as e:
            _fail("GLANCE_UNREACHABLE", image_id, type(e).__name__, str(e)[:200])
        finally:
            conn.close()
        if count > len(uuids):
            _fail("IMAGE_BAD_CHAIN", image_id, f"{count} VHDs but {len(uuids)} UUIDs")
        paths = dom0_vhdchain.link_chain(staging, count, uuids, "IMAGE", image_id)
        dom0_vhdchain.move_into_sr(paths, sr_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    leaf = uuids[0]
    return json.dumps({"root": {"uuid": leaf}, "vdis": uuids[:count]})


class _ChunkedSender:
    """A file object whose writes go out as HTTP/1.1 chunks of about CHUNK bytes."""

    def __init__(self, conn):
        self.conn = conn
        self.buffer = bytearray()
        self.sent = 0

    def write(self, data):
        if not self.buffer and len(data) >= CHUNK:  # a whole chunk already: no copy
            self._send_chunk(data)
            return len(data)
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._flush()
        return len(data)

    def _send_chunk(self, data):
        self.conn.send(b"%x\r\n" % len(data))
        self.conn.send(data)
        self.conn.send(b"\r\n")
        self.sent += len(data)

    def _flush(self):
        if self.buffer:
            self._send_chunk(bytes(self.buffer))
            self.buffer = bytearray()

    def finish(self):
        self._flush()
        self.conn.send(b"0\r\n\r\n")


def _send_tar(out, files):
    """The tar tarfile's ``w|`` mode writes (pax format: headers from ``TarInfo.tobuf``, data
    padded to blocks, two zero blocks, the record padded), each file's data written to
    ``out`` as it is read, without passing through tarfile's stream buffers."""
    total = 0
    for n, path in enumerate(files):
        st = os.stat(path)
        info = tarfile.TarInfo(f"{n}.vhd")
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
        header = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        out.write(header)
        with open(path, "rb") as f:
            left = st.st_size
            while left:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise OSError(f"{path} shrank while it was sent")
                out.write(data)
                left -= len(data)
        padding = -st.st_size % tarfile.BLOCKSIZE
        out.write(tarfile.NUL * padding)
        total += len(header) + st.st_size + padding
    end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    total += len(end)
    out.write(end + tarfile.NUL * (-total % tarfile.RECORDSIZE))


def upload_vhd(session, args):
    image_id, url, token, sr_path = _transfer_args(args)
    chain = dom0_vhdchain.uuids_arg(args, "vdi_uuids")
    level = dom0_pluginlib.int_arg(args, "compression_level", 0, 9) \
        if args.get("compression_level") else 0
    files = dom0_vhdchain.chain_files(sr_path, chain, "IMAGE", image_id)
    conn = _connect(url)
    try:
        conn.putrequest("PUT", _image_path(url, image_id))
        if token:
            conn.putheader("X-Auth-Token", token)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        sender = _ChunkedSender(conn)
        if level:
            # tarfile's stream mode takes no compresslevel before Python 3.12: gzip around it
            out = gzip.GzipFile(fileobj=sender, mode="wb", compresslevel=level)
            with tarfile.open(fileobj=out, mode="w|") as tar:
                for n, path in enumerate(files):
                    tar.add(path, arcname=f"{n}.vhd", recursive=False)
            out.close()
        else:
            _send_tar(sender, files)
        sender.finish()
        resp = conn.getresponse()
        _check_http(resp, image_id)
        resp.read()
    except (OSError, http.client.HTTPException) as e:
        _fail("GLANCE_UNREACHABLE", image_id, type(e).__name__, str(e)[:200])
    finally:
        conn.close()
    return json.dumps({"image_id": image_id, "bytes": sender.sent})


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"download_vhd": download_vhd, "upload_vhd": upload_vhd})
