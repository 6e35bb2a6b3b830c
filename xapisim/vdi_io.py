"""``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``: disk bytes over HTTP.

Bodies are streamed in 1 MiB pieces, so memory stays flat whatever the image
size.  Every transfer reports into a task (the caller's ``task_id`` or a new
one) whose ref is sent in the ``task-id`` header; the import task's result is
the VDI ref as an XML-RPC fragment.
"""
from __future__ import annotations

import logging
import os
import shutil

from . import tasks
from .call import Call
from .datamodel import NULL_REF
from .disks import VHD_MAX_BYTES
from .errors import HttpError, XapiError
from .messages.vdi import new_vdi, sr_info, update_sr_usage
from .vhd import VhdError

LOG = logging.getLogger(__name__)
CHUNK = 1 << 20
FORMATS = {"raw": "raw", "vhd": "vpc", "qcow2": "qcow2"}
CONTENT_TYPES = {"raw": "application/octet-stream", "vhd": "application/vhd",
                 "qcow2": "application/x-qemu-disk", "tar": "application/x-tar"}


def handler_task(req, call: Call, label: str) -> str:
    """The caller's task (``task_id`` cookie or query), or one that goes when the handler ends.

    As ``Xapi_http.with_context``: a forwarded task is the caller's to destroy;
    a task the handler makes for itself is destroyed once it has finished.
    """
    tid = req.param("task_id") or req.headers.get("task-id")
    store = call.store
    if tid:
        if not store.exists("task", tid):
            raise HttpError(404, "task not found")
        return tid
    return tasks.create(call, label, destroy_when_done=True)


def handler_call(req, session: str, label: str) -> Call:
    """The call context of an HTTP handler, reporting into its task (``handler_task``)."""
    call = Call(req.server.backend, req.server.host_ref, session=session, wire_name=label)
    call.task = handler_task(req, call, label)
    return call


def _vdi_from(store, value: str) -> str:
    hit = store.resolve(value)
    if hit is None or hit[0] != "VDI":
        raise XapiError("HANDLE_INVALID", "VDI", value)
    return hit[1]


def import_raw_vdi(req, session: str) -> None:
    backend = req.server.backend
    store = backend.store
    call = Call(backend, req.server.host_ref, session=session, wire_name="import_raw_vdi")
    q = req.query()
    fmt = q.get("format", "raw")
    chunked = "chunked" in q
    if fmt not in FORMATS or (chunked and fmt != "raw"):
        raise HttpError(404, f"unsupported format {fmt!r}")
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        raise HttpError(400, "HTTP chunked transfer encoding is not supported")
    length = req.headers.get("Content-Length")
    if length is None and not chunked:
        raise HttpError(411, "Content-Length required")
    task = handler_task(req, call, "VDI import")
    call.task = task
    created = NULL_REF
    try:
        if "vdi" in q:
            vdi = _vdi_from(store, q["vdi"])
        elif "sr_id" in q or "sr_uuid" in q:
            sr = q.get("sr_id") or store.by_uuid_of("SR", q["sr_uuid"])
            store.get("SR", sr)
            if fmt != "raw":
                raise XapiError("VDI_IO_ERROR", "a new VDI can only be made from a raw image")
            created = vdi = new_vdi(call, sr, "imported", int(length or 0))
        else:
            raise XapiError("VDI_MISSING", NULL_REF, NULL_REF)
    except XapiError as e:
        tasks.finish(call, task, error=e)
        _answer(req, task, 400 if e.code == "VDI_MISSING" else 404)
        return
    _answer(req, task, 200, head_only=True)
    try:
        _receive(req, call, vdi, fmt, chunked, int(length) if length else None)
    except (XapiError, HttpError, OSError) as e:
        err = e if isinstance(e, XapiError) else XapiError("VDI_IO_ERROR", str(e))
        if created != NULL_REF:
            from .messages.vdi import destroy_vdi
            destroy_vdi(call, created)
        tasks.finish(call, task, error=err)
        req.close_connection = True
        return
    tasks.finish(call, task, result=vdi)


def _answer(req, task: str, status: int, head_only: bool = False) -> None:
    req.send_response(status)
    req.send_header("task-id", task)
    req.send_header("Content-Length", "0")
    req.end_headers()
    req.wfile.flush()


def _body(req, call: Call, length: int):
    """The request body in pieces of at most CHUNK bytes, reporting progress."""
    left = length
    while left > 0:
        buf = req.rfile.read(min(CHUNK, left))
        if not buf:
            raise XapiError("VDI_IO_ERROR", "premature end of the image")
        left -= len(buf)
        call.progress(0.9 * (length - left) / length)
        yield buf


def _receive_raw(req, call: Call, disk, chunked: bool, length: int | None, size: int) -> None:
    """Write raw bytes straight into the VDI's blocks (xapi writes only what it is sent)."""
    from .http_front import chunk_frames
    with disk:
        try:
            if chunked:
                for offset, data in chunk_frames(req.rfile):
                    disk.write_at(offset, data)
            else:
                if length > size:
                    raise XapiError("VDI_IO_ERROR", "image is larger than the VDI")
                offset = 0
                for buf in _body(req, call, length):
                    disk.write_at(offset, buf)
                    offset += len(buf)
        except VhdError as e:
            raise XapiError("VDI_IO_ERROR", str(e)) from None


def _receive(req, call: Call, vdi: str, fmt: str, chunked: bool, length: int | None) -> None:
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        sr_uuid, sr_type = sr_info(store, rec["SR"])
        size = int(rec["virtual_size"])
        uuid = rec["uuid"]
    disks = call.backend.disks
    if fmt == "raw":
        _receive_raw(req, call, disks.open_disk(sr_uuid, sr_type, uuid, writable=True), chunked,
                     length, size)
    else:
        target = disks.temp_file("." + fmt)
        try:
            with open(target, "r+b") as f:
                for buf in _body(req, call, length):
                    f.write(buf)
                f.truncate(length)
            disks.import_image(target, FORMATS[fmt], sr_uuid, sr_type, uuid, size)
        finally:
            target.unlink(missing_ok=True)
    with store.lock:
        if store.exists("VDI", vdi):
            store.set("VDI", vdi, physical_utilisation=disks.physical_size(sr_uuid, sr_type, uuid, size))
            update_sr_usage(call, store.get("VDI", vdi)["SR"])


def export_raw_vdi(req, session: str) -> None:
    backend = req.server.backend
    store = backend.store
    call = Call(backend, req.server.host_ref, session=session, wire_name="export_raw_vdi")
    q = req.query()
    fmt = q.get("format", "raw")
    if fmt not in FORMATS:
        raise HttpError(404, f"unsupported format {fmt!r}")
    task = handler_task(req, call, "VDI export")
    call.task = task
    try:
        vdi = _vdi_from(store, q.get("vdi", ""))
        with store.lock:
            rec = store.get("VDI", vdi)
            sr_uuid, sr_type = sr_info(store, rec["SR"])
            if fmt == "vhd" and int(rec["virtual_size"]) > VHD_MAX_BYTES:
                raise XapiError("VDI_TOO_LARGE", vdi, VHD_MAX_BYTES)
        if fmt == "raw" and backend.disks.is_file_sr(sr_type):
            return _send_blocks(req, call, task, rec, backend.disks.open_disk(sr_uuid, sr_type,
                                                                              rec["uuid"]))
        path, temporary = backend.disks.export_file(sr_uuid, sr_type, rec["uuid"], fmt)
    except XapiError as e:
        LOG.info("export_raw_vdi failed: %s", e)
        tasks.finish(call, task, error=e)
        _answer(req, task, 404)
        return
    try:
        total = os.path.getsize(path)
        req.send_response(200)
        req.send_header("task-id", task)
        req.send_header("Content-Type", CONTENT_TYPES[fmt])
        req.send_header("Content-Length", str(total))
        req.send_header("Content-Disposition", f'attachment; filename="{rec["uuid"]}.{fmt}"')
        req.end_headers()
        req.wfile.flush()
        with open(path, "rb") as f:
            _send_file(req, f)
        tasks.finish(call, task, result="")
    except OSError as e:
        tasks.finish(call, task, error=XapiError("VDI_IO_ERROR", str(e)))
        req.close_connection = True
    finally:
        if temporary:
            os.unlink(path)


def _send_file(req, f) -> None:
    """sendfile(2) when the socket allows it; a copy loop on non-blocking (e.g. eventlet) sockets."""
    try:
        req.connection.sendfile(f)
    except ValueError:  # refused before sending anything
        shutil.copyfileobj(f, req.wfile, CHUNK)


def _send_blocks(req, call: Call, task: str, rec: dict, disk) -> None:
    """A VHD-backed VDI as raw bytes, read block by block (no temporary copy)."""
    with disk:
        req.send_response(200)
        req.send_header("task-id", task)
        req.send_header("Content-Type", CONTENT_TYPES["raw"])
        req.send_header("Content-Length", str(disk.size))
        req.send_header("Content-Disposition", f'attachment; filename="{rec["uuid"]}.raw"')
        req.end_headers()
        try:
            sent = 0
            for block in disk.blocks():
                req.wfile.write(block)
                sent += len(block)
                call.progress(sent / max(1, disk.size))
            req.wfile.flush()
            tasks.finish(call, task, result="")
        except OSError as e:
            tasks.finish(call, task, error=XapiError("VDI_IO_ERROR", str(e)))
            req.close_connection = True
