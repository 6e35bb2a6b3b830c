"""XVA's objects: what an export carries, and the objects an import makes; ``VM.import``.

Export follows ``export.ml``: the VM and what it uses (VBDs and their VDIs
and SRs, VIFs and their networks, metrics, the hosts it names) become
``ova.xml`` objects with export references, records cleaned as
``make_vm``/``make_vbd``/... clean them; the disks follow in 1 MiB chunks with
zero chunks left out (the format itself is ``xapisim.xva``).

Import follows ``import.ml``: objects are made class by class in xapi's order
(host, SR, VDI, metrics, VM, network, VBD, VIF); networks are matched by
name, then by bridge, and made if missing; VIFs get new MACs and the VM a new
uuid and ``mac_seed`` unless ``restore=true``; a default template already
present is reused.  Every object made is destroyed again if a later step
fails (unless ``force=true``, as in xapi), so a refused XVA leaves the SR as
it was.  A metadata import makes no disks: VDIs are found by uuid
(``vdi:<uuid>`` maps) or by SR and location.  ``VM.import`` fetches an XVA
from a URL (``xapi_vm.ml import_inner``).  The HTTP handlers are in
``xapisim.xva_io``.  Not modelled: vTPM contents, VGPUs and PVS proxies in an
export (left out), live (migration) imports.
"""
from __future__ import annotations

import logging
import urllib.error
import urllib.request
import uuid as uuidlib

from .. import xva
from ..call import Call
from ..datamodel import NULL_REF, classes
from ..errors import XapiError
from ..registry import api
from ..values import coerce, from_epoch
from .lifecycle import is_default_template
from .vdi import destroy_vdi, new_vdi, sr_info, update_sr_usage

LOG = logging.getLogger(__name__)
EXPORT_CLASSES = ("host", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VIF", "network",
                  "VDI", "SR")
IMPORT_ORDER = ("host", "SR", "VDI", "VM_guest_metrics", "VM_metrics", "VM", "network", "VBD",
                "VIF")
MAX_REDIRECTS = 5
# what a dry-run import puts in its table for an object it would have made
_DRY_RUN_REF = "OpaqueRef:dry-run"


# ============================================================ export
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
    from ..inventory import SOFTWARE_VERSION
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


def streamed_vdis(store, vm: str, table: dict[str, str], preserve: bool) -> list[tuple[str, str]]:
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


def send_disk(call: Call, writer: xva.TarWriter, prefix: str, vdi: str, progress) -> None:
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
                piece = block[start:start + xva.CHUNK]
                if number == 0:
                    sent_first = True
                elif not sent_first:
                    writer.chunk(prefix, 0, xva.ZERO_VIEW[:min(xva.CHUNK, size)])
                    sent_first = True
                if number in (0, last) or not xva.is_zero(piece):
                    writer.chunk(prefix, number, piece)
                progress(len(piece))
                if number == last:
                    return
    if not sent_first:
        writer.chunk(prefix, 0, xva.ZERO_VIEW[:min(xva.CHUNK, size)])
    if last > 0:
        writer.chunk(prefix, last, xva.ZERO_VIEW[:size - last * xva.CHUNK])


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
        """The snapshot's fields our datamodel knows, converted to internal values.

        A field an older exporter did not write takes the datamodel's default,
        as xapi's record unmarshaller does.
        """
        cdef = classes()[cls]
        out = {}
        for name, f in cdef.fields.items():
            if name not in snapshot:
                if not f.removed:
                    out[name] = f.initial()
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
        from .vm import destroy as vm_destroy
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
            self.table[obj["id"]] = _DRY_RUN_REF
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

    def _metrics(self, obj: dict) -> None:
        """A VM's metrics or guest metrics: a fresh copy of the exported record."""
        if self.dry_run:
            return
        cls = obj["class"]
        rec = self.record(cls, obj["snapshot"])
        rec.pop("uuid", None)
        ref = self.store.create(cls, rec)
        self._made(cls, ref)
        self.table[obj["id"]] = ref

    _vm_metrics = _vm_guest_metrics = _metrics

    def _vm(self, obj: dict) -> None:
        from .vm import destroy as vm_destroy
        from .vm import overhead
        store = self.store
        snap = obj["snapshot"]
        rec = self.record("VM", snap)
        if rec.get("domain_type") in (None, "unspecified"):  # import.ml get_vm_record
            rec["domain_type"] = "hvm" if rec.get("HVM_boot_policy") else "pv"
        oc = dict(rec.get("other_config", {}))
        if is_default_template(rec):
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
            self.table[obj["id"]] = _DRY_RUN_REF
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
            self.table[obj["id"]] = _DRY_RUN_REF
            return
        rec = self.record("network", snap)
        for k in ("uuid", "VIFs", "PIFs", "current_operations", "allowed_operations", "assigned_ips"):
            rec.pop(k, None)
        rec.setdefault("other_config", {})["import_task"] = self.call.task
        ref = store.create("network", rec)
        self._made("network", ref)
        self.table[obj["id"]] = ref

    def _vbd(self, obj: dict) -> None:
        from .vbd import create as vbd_create
        snap = obj["snapshot"]
        rec = self.record("VBD", snap)
        vm = self.lookup(snap.get("VM", NULL_REF))
        vdi_ext = snap.get("VDI", NULL_REF)
        have_vdi = vdi_ext in self.table
        if rec.get("currently_attached") and not have_vdi and rec.get("type") != "CD":
            raise XapiError("IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND")
        if not have_vdi and rec.get("type") == "Disk":
            return  # xapi leaves out a disk whose VDI it cannot find
        if self.dry_run:
            return
        values = {k: rec[k] for k in ("userdevice", "bootable", "mode", "type", "unpluggable",
                                      "other_config", "qos_algorithm_type",
                                      "qos_algorithm_params") if k in rec}
        values.update(VM=vm, VDI=self.table[vdi_ext] if have_vdi else NULL_REF, empty=not have_vdi)
        ref = vbd_create(self.call, values)
        self._made("VBD", ref)
        self.table[obj["id"]] = ref

    def _vif(self, obj: dict) -> None:
        from .vif import create as vif_create
        snap = obj["snapshot"]
        rec = self.record("VIF", snap)
        vm = self.lookup(snap.get("VM", NULL_REF))
        net = self.lookup(snap.get("network", NULL_REF))
        if self.dry_run:
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


def assert_compatible(call: Call, version: dict) -> None:
    mine = version_struct(call.backend, call.host)
    theirs = (xva.int_of(version["xapi_major"]), xva.int_of(version["xapi_minor"]))
    if (mine["xapi_major"], mine["xapi_minor"]) < theirs:
        raise XapiError("IMPORT_INCOMPATIBLE_VERSION")


def receive_disks(call: Call, reader: xva.TarReader, importer: Importer, objects: list[dict]) -> None:
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
                if not xva.is_zero(data):
                    disk.write_at(offset, data)
                done = max(done, offset + len(data))
                call.progress(0.95 * done / max(1, total))
        with store.lock:
            if store.exists("VDI", vdi):
                store.set("VDI", vdi, physical_utilisation=call.backend.disks.physical_size(
                    sr_uuid, sr_type, vdi_uuid, size))
                update_sr_usage(call, store.get("VDI", vdi)["SR"])


def import_archive(call: Call, body: xva.Body, sr: str | None, restore: bool, force: bool,
                   vdi_map: dict[str, str] | None = None, dry_run: bool = False) -> list[str]:
    """Read an XVA (``sr`` given) or a metadata export (``sr`` None); the VMs made.

    Raises the XapiError xapi fails the import with; nothing made is left then.
    """
    importer = None
    try:
        reader, xml = xva.open_archive(body)
        version, objects = xva.parse_header(xml)
        assert_compatible(call, version)
        importer = Importer(call, objects, sr, restore, force, vdi_map, dry_run=dry_run)
        importer.run()
        if sr is not None:
            try:
                receive_disks(call, reader, importer, objects)
            except BaseException:
                if not force:
                    importer.cleanup()
                raise
        return importer.finish()
    except xva.PrematureEof:
        raise XapiError("IMPORT_ERROR_PREMATURE_EOF") from None
    except OSError as e:
        if importer is not None and not force:
            importer.cleanup()
        raise XapiError("IMPORT_ERROR", str(e)[:300]) from None


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS


@api("VM", "import")
def vm_import(call: Call, url: str, sr: str, full_restore: bool, force: bool) -> list[str]:
    """``VM.import``: GET the XVA at ``url`` (following up to 5 redirects) and import it."""
    call.store.get("SR", sr)
    if call.store.get("SR", sr)["content_type"] == "iso":
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    opener = urllib.request.build_opener(_Redirects())
    try:
        resp = opener.open(url, timeout=60)
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            raise XapiError("IMPORT_ERROR", "Maximum redirect limit reached") from None
        raise XapiError("IMPORT_ERROR", f"{e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise XapiError("IMPORT_ERROR", str(getattr(e, "reason", e))[:300]) from None
    with resp:
        length = resp.headers.get("Content-Length")
        body = xva.Body(resp, int(length) if length and length.isdigit() else None)
        return import_archive(call, body, sr, full_restore, force)
