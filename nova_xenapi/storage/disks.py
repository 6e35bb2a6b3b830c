"""VDIs and VBDs: choosing the SR, making, attaching, filling, reading and removing disks.

Every VDI the driver makes is tagged in ``other_config`` with the instance
it belongs to (``nova_instance_uuid``) and its role (``nova_disk_type``), so
destroy removes exactly what the instance owned and leaves volumes alone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from nova import exception
from oslo_log import log as logging

from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession

LOG = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
ROOT, SWAP, EPHEMERAL, CONFIG_DRIVE = "0", "1", "2", "3"
CHUNK = 1 << 20
#: other_config mark of a VBD ``plugged`` makes: the uuid of the XAPI host whose compute plugged
#: it, so that compute removes it at start-up if it died with the disk plugged (leftovers.py)
PLUGGED = "nova_plugged_by"


def find_sr(session: XenAPISession, matching_filter: str) -> str:
    """The SR named by ``sr_matching_filter``; a clear error if none matches.

    With ``other-config:<key>=<value>`` only an SR plugged into this host
    counts, as in the old driver: every host of a pool has its own "Local
    storage" with ``i18n-key=local-storage``.
    """
    key, _, value = matching_filter.partition(":")
    if key == "default-sr" and value == "true":
        pool = session.call_xenapi("pool.get_all")[0]
        sr = session.call_xenapi("pool.get_default_SR", pool)
        if sr != NULL:
            return sr
    elif key == "other-config":
        want_key, _, want_value = value.partition("=")
        pbds = session.call_xenapi("PBD.get_all_records")
        for ref, rec in session.call_xenapi("SR.get_all_records").items():
            if rec["other_config"].get(want_key) == want_value and any(
                    pbds.get(p, {}).get("host") == session.host_ref for p in rec["PBDs"]):
                return ref
    raise exception.StorageRepositoryNotFound(
        reason=f"no SR matches [xenserver] sr_matching_filter = {matching_filter!r}")


def create_vdi(session: XenAPISession, sr: str, instance_uuid: str, role: str,
               name_label: str, size: int, read_only: bool = False,
               other_config: dict[str, str] | None = None) -> str:
    """A new VDI tagged as ``instance_uuid``'s ``role`` disk (or with ``other_config`` instead)."""
    return session.call_xenapi("VDI.create", {
        "name_label": name_label,
        "name_description": role,
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": read_only,
        "other_config": other_config if other_config is not None else
        {"nova_instance_uuid": instance_uuid, "nova_disk_type": role},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    })


def create_vbd(session: XenAPISession, vm: str, vdi: str, userdevice: str, *,
               bootable: bool = False, read_only: bool = False,
               other_config: dict[str, str] | None = None,
               qos: tuple[str, dict[str, str]] = ("", {})) -> str:
    """A VBD of ``vdi`` at ``userdevice``; ``qos`` is its (qos_algorithm_type, params)."""
    return session.call_xenapi("VBD.create", {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": bootable,
        "mode": "RO" if read_only else "RW",
        "type": "Disk",
        "empty": False,
        "other_config": other_config or {},
        "qos_algorithm_type": qos[0],
        "qos_algorithm_params": qos[1],
    })


@contextlib.contextmanager
def plugged(session: XenAPISession, vm: str, vdi: str, read_only: bool = False,
            unplug_retries: int = 10) -> Iterator[str]:
    """``vdi`` hot-plugged into the running ``vm`` (dom0 or this compute VM); yields the device.

    The VBD is unplugged (retrying while the guest still holds the device)
    and destroyed however the block ends.
    """
    device = session.call_xenapi("VM.get_allowed_VBD_devices", vm)
    if not device:
        raise XenAPIError(["VBD_NO_FREE_DEVICE", vm])
    vbd = create_vbd(session, vm, vdi, device[0], read_only=read_only,
                     other_config={PLUGGED: session.host_uuid})
    try:
        session.call_xenapi("VBD.plug", vbd)
        try:
            yield session.call_xenapi("VBD.get_device", vbd)
        finally:
            unplug_vbd(session, vbd, unplug_retries)
    finally:
        session.remove("VBD.destroy", vbd)


def unplug_vbd(session: XenAPISession, vbd: str, retries: int = 10) -> None:
    """Unplug a VBD, retrying while the guest still holds the device; one already unplugged
    is not an error."""
    for attempt in range(retries):
        try:
            session.remove("VBD.unplug", vbd, done=("DEVICE_ALREADY_DETACHED", "HANDLE_INVALID"))
            return
        except XenAPIError as exc:
            if exc.code != "DEVICE_DETACH_REJECTED" or attempt == retries - 1:
                raise
            time.sleep(1)


def destroy_vdi(session: XenAPISession, vdi: str) -> None:
    """Destroy a VDI; one already gone is not an error."""
    session.remove("VDI.destroy", vdi)


def owned_by(session: XenAPISession, vdi: str, instance_uuid: str) -> bool:
    rec = session.get_record("VDI", vdi)
    return bool(rec) and rec["other_config"].get("nova_instance_uuid") == instance_uuid


def virtual_size(session: XenAPISession, vdi: str) -> int:
    return int(session.call_xenapi("VDI.get_virtual_size", vdi))


class _BodyWriter:
    """A file-like ``write`` that sends the request body and counts it."""

    def __init__(self, conn: Any, length: int) -> None:
        self._conn = conn
        self._length = length
        self.written = 0

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self._length:
            raise XenAPIError(["VDI_IMPORT_FAILED", "the image is larger than its recorded size"])
        if data:
            self._conn.send(bytes(data))
            self.written += len(data)


def _new_task(session: XenAPISession, label: str) -> str:
    return session.call_xenapi("task.create", label, "nova-xenapi")


class _FrameWriter:
    """xapi's ``chunked`` raw framing: (offset u64 LE, length u32 LE, bytes)..., then 0/0."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.written = 0

    def write_at(self, offset: int, data: bytes) -> None:
        self._conn.send(struct.pack("<QI", offset, len(data)) + data)
        self.written += len(data)

    def close(self) -> None:
        self._conn.send(struct.pack("<QI", 0, 0))


@contextlib.contextmanager
def importer(session: XenAPISession, vdi: str, fmt: str, length: int | None,
             timeout: float) -> Iterator[Any]:
    """Stream bytes into ``vdi`` through XAPI's ``PUT /import_raw_vdi``.

    With a ``length`` the body is that many bytes (XAPI does not take HTTP
    chunked transfer encoding) and the writer has ``write(data)``; with
    ``length=None`` (raw only) the body uses xapi's own ``chunked`` framing
    and the writer has ``write_at(offset, data)``, so holes are never sent.
    When the block ends the import task is waited for, so a disk that did
    not fit or a format that does not parse raises here, with XAPI's error.
    """
    task = _new_task(session, "nova-xenapi import")
    query = {"vdi": vdi, "format": fmt, "task_id": task}
    if length is None:
        query["chunked"] = "true"
    try:
        try:
            with session.http_request("PUT", "/import_raw_vdi", query) as (conn, target):
                conn.putrequest("PUT", target, skip_accept_encoding=True)
                if length is not None:
                    conn.putheader("Content-Length", str(length))
                conn.endheaders()
                writer = _BodyWriter(conn, length) if length is not None else _FrameWriter(conn)
                yield writer
                if length is None:
                    writer.close()
                elif writer.written != length:
                    raise XenAPIError(["VDI_IMPORT_FAILED",
                                       f"sent {writer.written} of {length} bytes"])
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise XenAPIError(["VDI_IMPORT_FAILED", f"HTTP {resp.status} {resp.reason}"])
        except HostConnectionError:
            # the host may have closed the upload because the import failed: its task says why
            rec = session.get_record("task", task)
            if rec and rec["status"] == "failure" and rec["error_info"]:
                raise XenAPIError(rec["error_info"]) from None
            raise
        session.wait_for_task(task, timeout, what="VDI import")
        task = None  # wait_for_task destroyed it
    finally:
        if task is not None:
            with contextlib.suppress(Exception):
                session.call_xenapi("task.cancel", task)
            session.discard_task(task)


def data_extents(path: str) -> Iterator[tuple[int, int]]:
    """(offset, length) of the parts of a sparse file that hold data."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # no more data (ENXIO)
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end - start
            pos = end
    finally:
        os.close(fd)


def import_sparse(session: XenAPISession, vdi: str, path: str, timeout: float) -> int:
    """Copy a local raw file into ``vdi``, sending only its data; return the bytes sent."""
    with open(path, "rb") as f, importer(session, vdi, "raw", None, timeout) as writer:
        for start, length in data_extents(path):
            f.seek(start)
            done = 0
            while done < length:
                chunk = f.read(min(CHUNK, length - done))
                writer.write_at(start + done, chunk)
                done += len(chunk)
    return writer.written


def import_file(session: XenAPISession, vdi: str, path: str, fmt: str, timeout: float) -> int:
    """Copy a local file into ``vdi``; return the bytes sent."""
    with open(path, "rb") as data, importer(session, vdi, fmt, os.path.getsize(path), timeout) as writer:
        while chunk := data.read(CHUNK):
            writer.write(chunk)
    return writer.written


@contextlib.contextmanager
def exporter(session: XenAPISession, vdi: str, fmt: str) -> Iterator[BinaryIO]:
    """Read ``vdi`` through XAPI's ``GET /export_raw_vdi`` as a file-like object."""
    task = _new_task(session, "nova-xenapi export")
    try:
        with session.http_request("GET", "/export_raw_vdi",
                                  {"vdi": vdi, "format": fmt, "task_id": task}) as (conn, target):
            conn.request("GET", target)
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                raise XenAPIError(["VDI_EXPORT_FAILED", f"HTTP {resp.status} {resp.reason}"])
            yield resp
    finally:
        session.discard_task(task)


MAX_VHD_CHAIN = 30  # blktap's limit on the depth of a VHD chain


def vhd_chain(session: XenAPISession, vdi: str) -> list[str]:
    """UUIDs of ``vdi`` and the base copies under it (``sm_config:vhd-parent``), leaf first."""
    uuids, ref = [], vdi
    while True:
        rec = session.call_xenapi("VDI.get_record", ref)
        uuids.append(rec["uuid"])
        parent = rec["sm_config"].get("vhd-parent")
        if not parent:
            return uuids
        if len(uuids) >= MAX_VHD_CHAIN:
            raise exception.NovaException(f"the VHD chain of VDI {uuids[0]} is deeper than "
                                          f"{MAX_VHD_CHAIN}")
        ref = session.call_xenapi("VDI.get_by_uuid", parent)
