"""``GET /export``, ``GET /export_metadata``, ``PUT /import``, ``PUT /import_metadata``: XVA over HTTP.

Export follows ``export.ml``: the VM and what it uses (VBDs and their VDIs
and SRs, VIFs and their networks, metrics, the hosts it names) become
``ova.xml`` objects with export references; the VM is locked with the
``export`` operation (so it must be halted or suspended), the answer is an
HTTP/1.0 ``200`` with no length, and the disks follow in 1 MiB chunks with
zero chunks left out.  ``use_compression`` gzips or zstd-compresses the
stream.

Import follows ``import.ml``: ``200`` is sent before the body is read and the
caller learns the outcome from the task, whose result is the set of new VMs.
Objects are made class by class in xapi's order (host, SR, VDI, metrics, VM,
network, VBD, VIF); networks are matched by name, then by bridge, and made
if missing; VIFs get new MACs and the VM a new uuid and ``mac_seed`` unless
``restore=true``.  Every object made is destroyed again if a later step fails
(unless ``force=true``, as in xapi), so a refused XVA leaves the SR as it was.
``/import_metadata`` makes no disks: VDIs are found by uuid (``vdi:<uuid>``
query maps) or by SR and location.  Not modelled: vTPM contents, VGPUs and
PVS proxies in an export (left out), live (migration) imports.
"""
from __future__ import annotations

import logging
import uuid as uuidlib

from . import tasks, xva
from .call import Call
from .datamodel import NULL_REF, classes
from .errors import HttpError, XapiError
from .messages.vdi import destroy_vdi, new_vdi, sr_info, update_sr_usage
from .values import coerce, from_epoch
from .vdi_io import handler_task

LOG = logging.getLogger(__name__)
EXPORT_CLASSES = ("host", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VIF", "network",
                  "VDI", "SR")
IMPORT_ORDER = ("host", "SR", "VDI", "VM_guest_metrics", "VM_metrics", "VM", "network", "VBD",
                "VIF")
DRAIN_LIMIT = 256 << 20  # body bytes read after a failed import, so the client sees the task


# ============================================================ export
def _vm_of(req, store) -> str:
    q = req.query()
    if "ref" in q:
        store.get("VM", q["ref"])
        return q["ref"]
    if "uuid" in q:
        return store.by_uuid_of("VM", q["uuid"])
    raise XapiError("INTERNAL_ERROR", "Not_found")


def _table(store, vms: list[str], with_snapshots: bool, preserve: bool) -> dict[str, str]:
    """Internal ref -> export reference for everything the VMs use (export.ml update_table)."""
    table: dict[str, str] = {}

    def add(ref: str) -> None:
        if ref != NULL_REF and ref not in table:
            table[ref] = f"Ref:{len(table)}"

    def add_vm(vm: str, snapshots: bool) -> None:
        if vm in table or not store.exists("VM", vm):
            return
        add(vm)
        rec = store.get("VM", vm)
        for vif in rec["VIFs"]:
            add(vif)
            add(store.get("VIF", vif)["network"])
        for vbd in rec["VBDs"]:
            add(vbd)
            v = store.get("VBD", vbd)
            if not v["empty"] and store.exists("VDI", v["VDI"]):
                add(v["VDI"])
                add(store.get("VDI", v["VDI"])["SR"])
        if snapshots:
            for snap in rec["snapshots"]:
                add_vm(snap, False)
        if preserve and rec["power_state"] == "Suspended" and store.exists("VDI", rec["suspend_VDI"]):
            add(rec["suspend_VDI"])
            add(store.get("VDI", rec["suspend_VDI"])["SR"])
        for f in ("metrics", "guest_metrics", "resident_on", "affinity"):
            if store.resolve(rec[f]) is not None:
                add(rec[f])
        if snapshots and store.exists("VM", rec["parent"]):
            add_vm(rec["parent"], False)
    for vm in vms:
        add_vm(vm, with_snapshots)
    return table


def _externalise(cls: str, rec: dict, table: dict[str, str]) -> dict:
    """The record with every reference an export reference, or NULL if not exported."""
    cdef = classes()[cls]
    out = {}
    for name, f in cdef.fields.items():
        v = rec.get(name, f.initial())
        if f.type.kind == "ref":
            v = table.get(v, NULL_REF)
        elif f.type.kind == "set" and f.type.elem is not None and f.type.elem.kind == "ref":
            v = [table[x] for x in v if x in table]
        out[name] = v
    return out


def _object(cls: str, ref: str, rec: dict, table: dict[str, str], preserve: bool,
            with_snapshots: bool) -> dict:
    snap = _externalise(cls, rec, table)
    for ops in ("current_operations", "allowed_operations"):
        if ops in snap:
            snap[ops] = {} if ops == "current_operations" else []
    if cls == "VM":
        if not preserve:
            snap["power_state"] = "Halted"
            snap["suspend_VDI"] = NULL_REF
        if not with_snapshots:
            snap.update(is_a_snapshot=False, snapshot_of=NULL_REF, snapshots=[],
                        snapshot_time=from_epoch(0), transportable_snapshot_id="",
                        parent=NULL_REF)
        snap.update(crash_dumps=[], consoles=[], protection_policy=NULL_REF, blobs={})
    elif cls in ("VBD", "VIF"):
        if not preserve:
            snap["currently_attached"] = False
        snap["metrics"] = NULL_REF
    elif cls == "VDI":
        snap["crash_dumps"] = []
    elif cls == "SR":
        snap["PBDs"] = []
    elif cls == "network":
        snap["PIFs"] = []
    elif cls == "host":
        for k in ("PIFs", "PBDs", "PGPUs", "PCIs", "host_CPUs", "patches", "crashdumps",
                  "supported_bootloaders", "capabilities", "tags", "ha_statefiles",
                  "ha_network_peers"):
            snap[k] = []
        for k in ("license_params", "blobs", "external_auth_configuration", "logging",
                  "cpu_configuration", "other_config", "software_version"):
            snap[k] = {}
        snap.update(metrics=NULL_REF, external_auth_type="", external_auth_service_name="",
                    sched_policy="")
    return {"class": cls, "id": table[ref], "snapshot": snap}


def version_struct(backend, host: str) -> dict:
    """The ``version`` of an export made on ``host`` (importexport.ml this_version)."""
    from .inventory import SOFTWARE_VERSION
    sv = backend.store.get("host", host)["software_version"] or SOFTWARE_VERSION
    major, _, minor = sv.get("xapi", SOFTWARE_VERSION["xapi"]).partition(".")
    return {"hostname": sv.get("hostname", ""), "date": sv.get("date", ""),
            "product_version": sv.get("product_version", ""),
            "product_brand": sv.get("product_brand", ""),
            "build_number": sv.get("build_number", ""), "xapi_major": int(major),
            "xapi_minor": int(minor or 0), "export_vsn": xva.EXPORT_VSN}


def metadata(call: Call, vms: list[str], with_snapshots: bool, preserve: bool
             ) -> tuple[dict[str, str], bytes]:
    store = call.store
    with store.lock:
        table = _table(store, vms, with_snapshots, preserve)
        objects = []
        for cls in EXPORT_CLASSES:
            for ref, rec in store.tables[cls].items():
                if ref in table:
                    objects.append(_object(cls, ref, rec, table, preserve, with_snapshots))
        xml = xva.header_xml(version_struct(call.backend, call.host), objects)
    return table, xml


def _streamed_vdis(store, vm: str, table: dict[str, str], preserve: bool) -> list[tuple[str, str]]:
    """(export reference, VDI) of the disks an export carries, in xapi's streaming order."""
    rec = store.get("VM", vm)
    vdis = [store.get("VBD", v)["VDI"] for v in rec["VBDs"] if store.get("VBD", v)["type"] != "CD"]
    if preserve and rec["power_state"] == "Suspended":
        vdis.insert(0, rec["suspend_VDI"])
    out = []
    for vdi in vdis:
        if vdi in table and store.exists("VDI", vdi) and \
                store.get("SR", store.get("VDI", vdi)["SR"])["content_type"] != "iso":
            out.append((table[vdi], vdi))
    return sorted(set(out))


def _send_disk(call: Call, writer: xva.TarWriter, prefix: str, vdi: str, progress) -> None:
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        sr_uuid, sr_type = sr_info(store, rec["SR"])
        size = int(rec["virtual_size"])
    last = (size - 1) // xva.CHUNK
    sent_first = False
    with call.backend.disks.open_disk(sr_uuid, sr_type, rec["uuid"]) as disk:
        for offset, block in disk.allocated():
            for start in range(0, len(block), xva.CHUNK):
                number = (offset + start) // xva.CHUNK
                piece = memoryview(block)[start:start + xva.CHUNK]
                if number == 0:
                    sent_first = True
                elif not sent_first:
                    writer.chunk(prefix, 0, xva.ZERO_VIEW[:min(xva.CHUNK, size)])
                    sent_first = True
                if number in (0, last) or piece != xva.ZERO_VIEW[:len(piece)]:
                    writer.chunk(prefix, number, piece)
                progress(len(piece))
                if number == last:
                    return
    if not sent_first:
        writer.chunk(prefix, 0, xva.ZERO_VIEW[:min(xva.CHUNK, size)])
    if last > 0:
        writer.chunk(prefix, last, xva.ZERO_VIEW[:size - last * xva.CHUNK])


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
    from .messages.lifecycle import Operation
    backend = req.server.backend
    store = backend.store
    call = Call(backend, req.server.host_ref, session=session, wire_name="VM.export")
    task = handler_task(req, call, "VM.export")
    call.task = task
    preserve = req.param("preserve_power_state") == "true"
    algorithm = xva.compression_of(req.query().get("use_compression"))
    try:
        vm = _vm_of(req, store)
        op = Operation(call, "VM", vm, "export")
        op.__enter__()
    except XapiError as e:
        return _fail_before_answer(req, call, task, e)
    try:
        table, xml = metadata(call, [vm], False, preserve)
        with store.lock:
            vdis = _streamed_vdis(store, vm, table, preserve)
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
            _send_disk(call, writer, prefix, vdi, progress)
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
    from .messages.lifecycle import Operation
    backend = req.server.backend
    store = backend.store
    call = Call(backend, req.server.host_ref, session=session, wire_name="VM.export_metadata")
    task = handler_task(req, call, "VM.export_metadata")
    call.task = task
    q = req.query()
    try:
        if q.get("all") == "true":
            include_dom0 = q.get("include_dom0", "true") == "true"
            with store.lock:
                vms = [r for r, rec in store.tables["VM"].items()
                       if not (rec["is_default_template"] or
                               (rec["is_a_template"] and
                                rec["other_config"].get("default_template") == "true"))
                       and (include_dom0 or not rec["is_control_domain"])]
        else:
            vms = [_vm_of(req, store)]
        ops = [Operation(call, "VM", vm, "metadata_export") for vm in vms]
        entered = []
        try:
            for op in ops:
                op.__enter__()
                entered.append(op)
            _, xml = metadata(call, vms, q.get("export_snapshots", "true") == "true", True)
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


# ============================================================ import
class Importer:
    """Makes the objects of an ``ova.xml`` (import.ml handle_all) and undoes them on failure."""

    def __init__(self, call: Call, objects: list[dict], sr: str | None, restore: bool,
                 force: bool, vdi_map: dict[str, str] | None = None, dry_run: bool = False) -> None:
        self.call = call
        self.store = call.store
        self.objects = objects
        self.by_id = {o["id"]: o for o in objects}
        self.sr = sr  # None for a metadata import
        self.restore = restore
        self.force = force
        self.vdi_map = vdi_map or {}
        self.dry_run = dry_run
        self.table: dict[str, str] = {}  # export reference -> our ref
        self.vms: list[str] = []
        self.made: list[tuple[str, str]] = []  # (class, ref), in creation order

    # -- helpers ---------------------------------------------------------
    def record(self, cls: str, snapshot: dict) -> dict:
        """The snapshot's fields our datamodel knows, converted to internal values."""
        cdef = classes()[cls]
        out = {}
        for name, f in cdef.fields.items():
            if name not in snapshot:
                continue
            try:
                out[name] = coerce(f.type, _plain(snapshot[name]))
            except XapiError:
                raise XapiError("IMPORT_ERROR", f"Rpc.Runtime_error: {cls}.{name}") from None
        return out

    def lookup(self, ext: str) -> str:
        if ext not in self.table:
            raise XapiError("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", ext)
        return self.table[ext]

    def snapshot_of(self, ext: str) -> dict:
        if ext not in self.by_id:
            raise XapiError("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", ext)
        return self.by_id[ext]["snapshot"]

    def _made(self, cls: str, ref: str) -> None:
        self.made.append((cls, ref))

    def cleanup(self) -> None:
        """Destroy what this import made, newest first (import.ml cleanup)."""
        from .messages.vm import destroy as vm_destroy
        store = self.store
        with store.lock:
            for cls, ref in reversed(self.made):
                if not store.exists(cls, ref):
                    continue
                try:
                    if cls == "VM":
                        store.set("VM", ref, current_operations={}, power_state="Halted")
                        vm_destroy(self.call, ref)
                    elif cls == "VDI":
                        destroy_vdi(self.call, ref)
                    else:
                        store.destroy(cls, ref)
                except XapiError as e:  # keep going: leave as little as possible
                    LOG.warning("import cleanup of %s %s: %s", cls, ref, e)
            self.made.clear()

    # -- the classes -----------------------------------------------------
    def run(self) -> None:
        try:
            with self.store.lock:
                for cls in IMPORT_ORDER:
                    for obj in self.objects:
                        if obj["class"] == cls:
                            getattr(self, f"_{cls.lower()}")(obj)
                for vm in self.vms:
                    self._relink(vm)
        except BaseException:
            if not self.force:
                self.cleanup()
            raise

    def _host(self, obj: dict) -> None:
        uuid = obj["snapshot"].get("uuid", "")
        hit = self.store.by_uuid.get(uuid)
        if hit and hit[0] == "host":
            self.table[obj["id"]] = hit[1]

    def _sr(self, obj: dict) -> None:
        snap = obj["snapshot"]
        if self.sr is not None:
            if snap.get("content_type") != "iso":
                self.table[obj["id"]] = self.sr
            return
        hit = self.store.by_uuid.get(snap.get("uuid", ""))
        if hit and hit[0] == "SR":
            self.table[obj["id"]] = hit[1]

    def _iso_vdi(self, snap: dict) -> str | None:
        store = self.store
        for ref, rec in store.tables["VDI"].items():
            sr = store.tables["SR"].get(rec["SR"], {})
            if rec["location"] == snap.get("location") and sr.get("content_type") == "iso" \
                    and sr.get("type") != "udev":
                return ref
        return None

    def _vdi(self, obj: dict) -> None:
        snap = obj["snapshot"]
        origin_sr = self.snapshot_of(snap.get("SR", NULL_REF)) if snap.get("SR") in self.by_id \
            else {}
        if origin_sr.get("content_type") == "iso":
            found = self._iso_vdi(snap)
            if found:
                self.table[obj["id"]] = found
            return
        if self.sr is None:
            return self._metadata_vdi(obj, snap)
        rec = self.record("VDI", snap)
        sr = self.lookup(snap.get("SR", NULL_REF))
        if self.dry_run:
            self.table[obj["id"]] = f"OpaqueRef:dry-{uuidlib.uuid4()}"
            return
        sm_config = {k: v for k, v in rec.get("sm_config", {}).items()
                     if k not in ("import_task", "vhd-parent")}
        sm_config["import_task"] = self.call.task
        extra = {k: rec[k] for k in ("name_description", "sharable", "read_only", "other_config",
                                     "xenstore_data", "tags", "is_a_snapshot", "snapshot_time",
                                     "metadata_of_pool", "on_boot", "allow_caching")
                 if k in rec}
        extra["sm_config"] = sm_config
        vdi = new_vdi(self.call, sr, rec.get("name_label", ""), int(rec.get("virtual_size", 0)),
                      rec.get("type", "user"), extra)
        self._made("VDI", vdi)
        self.table[obj["id"]] = vdi

    def _metadata_vdi(self, obj: dict, snap: dict) -> None:
        store = self.store
        target = self.vdi_map.get(snap.get("uuid", ""))
        if target:
            hit = store.by_uuid.get(target)
            if hit and hit[0] == "VDI":
                self.table[obj["id"]] = hit[1]
                return
        sr = self.table.get(snap.get("SR", NULL_REF))
        if sr is not None:
            for ref, rec in store.tables["VDI"].items():
                if rec["SR"] == sr and rec["location"] == snap.get("location"):
                    self.table[obj["id"]] = ref
                    return
        if self.force:
            return
        if sr is not None:
            raise XapiError("VDI_LOCATION_MISSING", sr, snap.get("location", ""))
        raise XapiError("VDI_CONTENT_ID_MISSING")

    def _vm_metrics(self, obj: dict) -> None:
        if self.dry_run:
            return
        rec = self.record("VM_metrics", obj["snapshot"])
        rec.pop("uuid", None)
        ref = self.store.create("VM_metrics", rec)
        self._made("VM_metrics", ref)
        self.table[obj["id"]] = ref

    def _vm_guest_metrics(self, obj: dict) -> None:
        if self.dry_run:
            return
        rec = self.record("VM_guest_metrics", obj["snapshot"])
        rec.pop("uuid", None)
        ref = self.store.create("VM_guest_metrics", rec)
        self._made("VM_guest_metrics", ref)
        self.table[obj["id"]] = ref

    def _vm(self, obj: dict) -> None:
        from .messages.vm import destroy as vm_destroy
        from .messages.vm import overhead
        store = self.store
        snap = obj["snapshot"]
        rec = self.record("VM", snap)
        oc = dict(rec.get("other_config", {}))
        default = rec.get("is_default_template") or (
            rec.get("is_a_template") and oc.get("default_template") == "true")
        if default:
            same = [r for r, v in store.tables["VM"].items()
                    if v["name_label"] == rec.get("name_label")]
            if same:
                self.table[obj["id"]] = same[0]
                self.vms.append(same[0])
                return
        existing = None
        if self.restore:
            hit = store.by_uuid.get(rec.get("uuid", ""))
            existing = hit[1] if hit and hit[0] == "VM" else None
        if existing is not None:
            ex = store.get("VM", existing)
            if ex["power_state"] != "Halted":
                if self.force:
                    return
                raise XapiError("VM_BAD_POWER_STATE", existing, "halted", ex["power_state"].lower())
            if int(ex["version"]) >= int(rec.get("version", 0)) and not self.force:
                raise XapiError("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", existing, ex["version"],
                                rec.get("version", 0))
        elif not self.force:
            rec["is_default_template"] = False
            oc.pop("default_template", None)
        if self.dry_run:
            self.table[obj["id"]] = f"OpaqueRef:dry-{uuidlib.uuid4()}"
            return
        if existing is not None:
            store.set("VM", existing, current_operations={})
            vm_destroy(self.call, existing)
        oc.pop("grant_api_access", None)
        if not self.restore:
            oc["mac_seed"] = str(uuidlib.uuid4())
            rec["generation_id"] = "" if rec.get("is_a_template") else \
                f"{uuidlib.uuid4().int >> 64}:{uuidlib.uuid4().int >> 64}"
        oc["import_task"] = self.call.task
        keep_uuid = rec.pop("uuid", None) if self.restore else None
        rec.pop("uuid", None)
        for k in ("VBDs", "VIFs", "consoles", "snapshots", "children", "crash_dumps", "VTPMs",
                  "VUSBs", "VGPUs", "attached_PCIs", "resident_on", "scheduled_to_be_resident_on",
                  "suspend_VDI", "metrics", "guest_metrics", "affinity", "parent", "snapshot_of",
                  "appliance", "protection_policy", "snapshot_schedule", "suspend_SR",
                  "current_operations", "allowed_operations"):
            rec.pop(k, None)
        rec.update(other_config=oc, power_state="Halted", domid=-1,
                   version=int(rec.get("version", 0)) + 1 if self.restore else 0,
                   is_control_domain=False)
        ref = store.create("VM", rec)
        self._made("VM", ref)
        if keep_uuid:
            store.change_uuid("VM", ref, keep_uuid)
        metrics = self.table.get(snap.get("metrics", NULL_REF))
        if metrics is None:
            metrics = store.create("VM_metrics", {})
            self._made("VM_metrics", metrics)
        gm = self.table.get(snap.get("guest_metrics", NULL_REF), NULL_REF)
        store.set("VM", ref, metrics=metrics, guest_metrics=gm,
                  memory_overhead=overhead(store.get("VM", ref)),
                  affinity=self.table.get(snap.get("affinity", NULL_REF), NULL_REF))
        if snap.get("power_state") == "Suspended" and snap.get("suspend_VDI") in self.table:
            store.set("VM", ref, power_state="Suspended",
                      suspend_VDI=self.table[snap["suspend_VDI"]])
        if not self.force:
            store.get("VM", ref)["current_operations"][self.call.task] = "import"
        self.call.backend.refresh("VM", ref)
        self.table[obj["id"]] = ref
        self.vms.append(ref)

    def _network(self, obj: dict) -> None:
        store = self.store
        snap = obj["snapshot"]
        for field in ("name_label", "bridge"):
            same = [r for r, v in store.tables["network"].items() if v[field] == snap.get(field)]
            if same:
                self.table[obj["id"]] = same[0]
                return
        if self.dry_run:
            self.table[obj["id"]] = f"OpaqueRef:dry-{uuidlib.uuid4()}"
            return
        rec = self.record("network", snap)
        for k in ("uuid", "VIFs", "PIFs", "current_operations", "allowed_operations", "assigned_ips"):
            rec.pop(k, None)
        rec.setdefault("other_config", {})["import_task"] = self.call.task
        ref = store.create("network", rec)
        self._made("network", ref)
        self.table[obj["id"]] = ref

    def _vbd(self, obj: dict) -> None:
        from .messages.vbd import create as vbd_create
        snap = obj["snapshot"]
        rec = self.record("VBD", snap)
        vm = self.lookup(snap.get("VM", NULL_REF))
        vdi_ext = snap.get("VDI", NULL_REF)
        have_vdi = vdi_ext in self.table
        if rec.get("currently_attached") and not have_vdi and rec.get("type") != "CD":
            raise XapiError("IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND")
        if not have_vdi and rec.get("type") == "Disk":
            return  # xapi leaves out a disk whose VDI it cannot find
        if self.dry_run or vm.startswith("OpaqueRef:dry-"):
            return
        values = {k: rec[k] for k in ("userdevice", "bootable", "mode", "type", "unpluggable",
                                      "other_config", "qos_algorithm_type",
                                      "qos_algorithm_params") if k in rec}
        values.update(VM=vm, VDI=self.table[vdi_ext] if have_vdi else NULL_REF, empty=not have_vdi)
        ref = vbd_create(self.call, values)
        self._made("VBD", ref)
        self.table[obj["id"]] = ref

    def _vif(self, obj: dict) -> None:
        from .messages.vif import create as vif_create
        snap = obj["snapshot"]
        rec = self.record("VIF", snap)
        vm = self.lookup(snap.get("VM", NULL_REF))
        net = self.lookup(snap.get("network", NULL_REF))
        if self.dry_run or vm.startswith("OpaqueRef:dry-"):
            return
        values = {k: rec[k] for k in ("device", "MTU", "other_config", "qos_algorithm_type",
                                      "qos_algorithm_params", "locking_mode") if k in rec}
        values.update(VM=vm, network=net, MAC=rec.get("MAC", "") if self.restore else "")
        ref = vif_create(self.call, values)
        self._made("VIF", ref)
        self.table[obj["id"]] = ref

    def _relink(self, vm: str) -> None:
        """snapshot_of and parent point at export references until every VM exists."""
        store = self.store
        if not store.exists("VM", vm):
            return
        ext = next((o for o in self.objects if self.table.get(o["id"]) == vm), None)
        if ext is None:
            return
        snap = ext["snapshot"]
        store.set("VM", vm, snapshot_of=self.table.get(snap.get("snapshot_of", NULL_REF), NULL_REF),
                  parent=self.table.get(snap.get("parent", NULL_REF), NULL_REF))

    def finish(self) -> list[str]:
        """Drop the ``import`` operation; the VMs made (snapshots only if nothing else)."""
        store = self.store
        with store.lock:
            for vm in self.vms:
                if store.exists("VM", vm):
                    store.get("VM", vm)["current_operations"].pop(self.call.task, None)
                    store.modified("VM", vm)
                    self.call.backend.refresh("VM", vm)
            vms = [v for v in dict.fromkeys(self.vms) if store.exists("VM", v)]
            plain = [v for v in vms if not store.get("VM", v)["is_a_snapshot"]]
            return plain or vms


def _plain(v):
    """XML-RPC's parsed values (DateTime objects) as the strings ``coerce`` accepts."""
    import xmlrpc.client
    if isinstance(v, xmlrpc.client.DateTime):
        return v.value
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _assert_compatible(call: Call, version: dict) -> None:
    mine = version_struct(call.backend, call.host)
    theirs = (xva.int_of(version["xapi_major"]), xva.int_of(version["xapi_minor"]))
    if (mine["xapi_major"], mine["xapi_minor"]) < theirs:
        raise XapiError("IMPORT_INCOMPATIBLE_VERSION")


def _import_sr(req, store, pool_ref: str) -> str:
    q = req.query()
    if "sr_id" in q:
        store.get("SR", q["sr_id"])
        return q["sr_id"]
    if "sr_uuid" in q:
        return store.by_uuid_of("SR", q["sr_uuid"])
    sr = store.get("pool", pool_ref)["default_SR"]
    if not store.exists("SR", sr):
        raise XapiError("DEFAULT_SR_NOT_FOUND", sr)
    return sr


def _receive_disks(call: Call, reader: xva.TarReader, importer: Importer, objects: list[dict]) -> None:
    """Stream every non-CD disk of the XVA into its new VDI (Stream_vdi.recv_all)."""
    store = call.store
    cd_vdis = set()
    disk_vdis = set()
    for o in objects:
        if o["class"] == "VBD":
            (cd_vdis if o["snapshot"].get("type") == "CD" else disk_vdis).add(o["snapshot"].get("VDI"))
    wanted = []
    for o in objects:
        if o["class"] != "VDI" or o["id"] not in importer.table:
            continue
        if o["id"] in disk_vdis or o["snapshot"].get("type") == "suspend":
            sr = importer.by_id.get(o["snapshot"].get("SR"), {}).get("snapshot", {})
            if sr.get("content_type") != "iso":
                wanted.append(o["id"])
    total = 0
    plan = []
    with store.lock:
        for ext in sorted(wanted):
            vdi = importer.table[ext]
            rec = store.get("VDI", vdi)
            sr_uuid, sr_type = sr_info(store, rec["SR"])
            size = int(xva.int_of(importer.by_id[ext]["snapshot"].get("virtual_size", 0)))
            plan.append((ext, vdi, sr_uuid, sr_type, rec["uuid"], size))
            total += size
    done = 0
    for ext, vdi, sr_uuid, sr_type, vdi_uuid, size in plan:
        with call.backend.disks.open_disk(sr_uuid, sr_type, vdi_uuid, writable=True) as disk:
            for offset, data in xva.read_disk(reader, ext, size):
                if data != xva.ZERO_VIEW[:len(data)]:
                    disk.write_at(offset, data)
                done = max(done, offset + len(data))
                call.progress(0.95 * done / max(1, total))
        with store.lock:
            if store.exists("VDI", vdi):
                store.set("VDI", vdi, physical_utilisation=call.backend.disks.physical_size(
                    sr_uuid, sr_type, vdi_uuid, size))
                update_sr_usage(call, store.get("VDI", vdi)["SR"])


def _import(req, session: str, label: str, full: bool) -> None:
    backend = req.server.backend
    store = backend.store
    call = Call(backend, req.server.host_ref, session=session, wire_name=label)
    q = req.query()
    restore = q.get("restore") == "true"
    force = q.get("force") == "true"
    task = handler_task(req, call, label)
    call.task = task
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
    importer = None
    try:
        reader, xml = xva.open_archive(body)
        version, objects = xva.parse_header(xml)
        _assert_compatible(call, version)
        vdi_map = {k[4:]: v for k, v in q.items() if k.startswith("vdi:")}
        importer = Importer(call, objects, sr, restore, force, vdi_map,
                            dry_run=not full and q.get("dry_run") == "true")
        importer.run()
        if full:
            try:
                _receive_disks(call, reader, importer, objects)
            except BaseException:
                if not force:
                    importer.cleanup()
                raise
        vms = importer.finish()
        tasks.finish(call, task, result=vms)
    except xva.PrematureEof:
        tasks.finish(call, task, error=XapiError("IMPORT_ERROR_PREMATURE_EOF"))
    except XapiError as e:
        tasks.finish(call, task, error=e)
    except OSError as e:
        if importer is not None and not force:
            importer.cleanup()
        tasks.finish(call, task, error=XapiError("IMPORT_ERROR", str(e)[:300]))
    finally:
        body.drain(DRAIN_LIMIT)


def import_vm(req, session: str) -> None:
    _import(req, session, "VM.import", full=True)


def import_metadata(req, session: str) -> None:
    _import(req, session, "VM.metadata_import", full=False)
