"""``GET /export``, ``GET /export_metadata``, ``PUT /import``, ``PUT /import_metadata``: XVA over HTTP.

The HTTP side of ``export.ml`` and ``import.ml``: the VM is locked with the
``export`` operation before the answer (so it must be halted or suspended;
otherwise a 500 and the task failed), the export answer is an HTTP/1.0
``200`` without a length, and ``use_compression`` gzips or zstd-compresses
the stream.  An import answers ``200`` (with ``task-id``) before it reads the
body; the caller learns the outcome from the task, whose result is the set
of new VMs.  What is exported and made is ``messages.vm_xva``.
"""
from __future__ import annotations

import logging

from . import tasks, xva
from .call import Call
from .errors import HttpError, XapiError
from .messages import vm_xva
from .messages.lifecycle import Operation, is_default_template
from .vdi_io import handler_call

LOG = logging.getLogger(__name__)
DRAIN_LIMIT = 256 << 20  # body bytes read after a failed import, so the client sees the task


def _named(req, store, cls: str, ref_key: str, uuid_key: str) -> str | None:
    """The object a handler's query names by ref or by uuid, None if it names none."""
    q = req.query()
    if ref_key in q:
        store.get(cls, q[ref_key])
        return q[ref_key]
    if uuid_key in q:
        return store.by_uuid_of(cls, q[uuid_key])
    return None


def _vm_of(req, store) -> str:
    vm = _named(req, store, "VM", "ref", "uuid")
    if vm is None:
        raise XapiError("INTERNAL_ERROR", "Not_found")  # export.ml: List.assoc "uuid"
    return vm


def _fail_before_answer(req, call: Call, task: str, err: XapiError) -> None:
    """xapi answers 500 when a handler fails before its 200, and fails the task."""
    tasks.finish(call, task, error=err)
    raise HttpError(500, f"<h1> Additional information </h1>{err}")


def _answer_headers(req, task: str, disposition: bool, length: int | None = None,
                    http10: bool = False) -> None:
    saved = req.protocol_version
    if http10:
        req.protocol_version = "HTTP/1.0"
    try:
        req.send_response(200)
    finally:
        req.protocol_version = saved
    req.send_header("Connection", "close")
    req.send_header("Cache-Control", "no-cache, no-store")
    req.send_header("task-id", task)
    req.send_header("Content-Type", "application/octet-stream")
    if disposition:
        req.send_header("Content-Disposition", 'attachment; filename="export.xva"')
    if length is not None:
        req.send_header("Content-Length", str(length))
    req.end_headers()
    req.close_connection = True


def export_vm(req, session: str) -> None:
    backend = req.server.backend
    store = backend.store
    call = handler_call(req, session, "VM.export")
    task = call.task
    preserve = req.param("preserve_power_state") == "true"
    algorithm = xva.compression_of(req.query().get("use_compression"))
    try:
        vm = _vm_of(req, store)
        op = Operation(call, "VM", vm, "export")
        op.__enter__()
    except XapiError as e:
        return _fail_before_answer(req, call, task, e)
    try:
        table, xml = vm_xva.metadata(call, [vm], False, preserve)
        with store.lock:
            vdis = vm_xva.streamed_vdis(store, vm, table, preserve)
            total = sum(int(store.get("VDI", v)["virtual_size"]) for _, v in vdis) or 1
        _answer_headers(req, task, True, http10=True)
        out = xva.Compressed(req.wfile, algorithm) if algorithm else req.wfile
        writer = xva.TarWriter(out)
        writer.member(xva.OVA_XML, xml)
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            call.progress(done[0] / total)
        for prefix, vdi in vdis:
            vm_xva.send_disk(call, writer, prefix, vdi, progress)
        writer.end()
        if algorithm:
            out.close()
        req.wfile.flush()
        tasks.finish(call, task, result="")
    except (XapiError, OSError) as e:
        err = e if isinstance(e, XapiError) else XapiError("CLIENT_ERROR", str(e))
        LOG.info("export of %s failed: %s", vm, err)
        tasks.finish(call, task, error=err)
    finally:
        op.__exit__(None, None, None)


def export_metadata(req, session: str) -> None:
    """``/export_metadata``: ``ova.xml`` alone in a tar, with snapshots unless told otherwise."""
    backend = req.server.backend
    store = backend.store
    call = handler_call(req, session, "VM.export_metadata")
    task = call.task
    q = req.query()
    try:
        if q.get("all") == "true":
            include_dom0 = q.get("include_dom0", "true") == "true"
            with store.lock:
                vms = [r for r, rec in store.tables["VM"].items()
                       if not is_default_template(rec)
                       and (include_dom0 or not rec["is_control_domain"])]
        else:
            vms = [_vm_of(req, store)]
        ops = [Operation(call, "VM", vm, "metadata_export") for vm in vms]
        entered = []
        try:
            for op in ops:
                op.__enter__()
                entered.append(op)
            _, xml = vm_xva.metadata(call, vms, q.get("export_snapshots", "true") == "true", True)
        finally:
            for op in entered:
                op.__exit__(None, None, None)
    except XapiError as e:
        return _fail_before_answer(req, call, task, e)
    buf = bytearray()

    class _Buf:
        def write(self, data) -> None:
            buf.extend(data)
    writer = xva.TarWriter(_Buf())
    writer.member(xva.OVA_XML, xml)
    writer.end()
    _answer_headers(req, task, True, length=len(buf), http10=True)
    req.wfile.write(buf)
    req.wfile.flush()
    tasks.finish(call, task, result="")


def _import_sr(req, store, pool_ref: str) -> str:
    sr = _named(req, store, "SR", "sr_id", "sr_uuid")
    if sr is not None:
        return sr
    sr = store.get("pool", pool_ref)["default_SR"]
    if not store.exists("SR", sr):
        raise XapiError("DEFAULT_SR_NOT_FOUND", sr)
    return sr


def _import(req, session: str, label: str, full: bool) -> None:
    backend = req.server.backend
    store = backend.store
    call = handler_call(req, session, label)
    task = call.task
    q = req.query()
    restore = q.get("restore") == "true"
    force = q.get("force") == "true"
    sr = None
    try:
        if full:
            sr = _import_sr(req, store, backend.pool_ref)
            if store.get("SR", sr)["content_type"] == "iso":
                raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    except XapiError as e:
        tasks.finish(call, task, error=e)
        raise HttpError(400 if e.code == "SR_OPERATION_NOT_SUPPORTED" else 500, str(e)) from None
    if req.headers.get("Transfer-Encoding"):
        tasks.finish(call, task, error=XapiError("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"))
        raise HttpError(403, "chunked transfer encoding is not supported by the import")
    length = req.headers.get("Content-Length")
    body = xva.Body(req.rfile, int(length) if length and length.isdigit() else None)
    _answer_headers(req, task, False)
    req.wfile.flush()
    try:
        vdi_map = {k[4:]: v for k, v in q.items() if k.startswith("vdi:")}
        vms = vm_xva.import_archive(call, body, sr, restore, force, vdi_map,
                                    dry_run=not full and q.get("dry_run") == "true")
        tasks.finish(call, task, result=vms)
    except XapiError as e:
        tasks.finish(call, task, error=e)
    finally:
        body.drain(DRAIN_LIMIT)


def import_vm(req, session: str) -> None:
    _import(req, session, "VM.import", full=True)


def import_metadata(req, session: str) -> None:
    _import(req, session, "VM.metadata_import", full=False)
