"""VM.snapshot, VM.clone, VM.copy and VM.provision: new VMs from old ones.

Disks are snapshotted, cloned or copied with the VDI operations; if any step
fails, everything made so far is destroyed again so nothing is orphaned.
"""
from __future__ import annotations

import re

from ..call import Call
from ..datamodel import NULL_REF
from ..errors import XapiError
from ..registry import api
from ..values import now
from .lifecycle import Operation
from .vdi import new_vdi

_SKIP = {"uuid", "VBDs", "VIFs", "consoles", "snapshots", "children", "metrics", "guest_metrics",
         "current_operations", "allowed_operations", "resident_on", "domid",
         "scheduled_to_be_resident_on", "VTPMs", "crash_dumps", "VUSBs", "VGPUs",
         "attached_PCIs", "suspend_VDI"}


def _new_vm(call: Call, src: dict, name: str, extra: dict) -> str:
    from .vm import overhead
    store = call.store
    values = {k: v for k, v in src.items() if k not in _SKIP}
    values.update(name_label=name, **extra)
    values["other_config"] = dict(values["other_config"])
    ref = store.create("VM", values)
    metrics = store.create("VM_metrics", {"install_time": now(), "last_updated": now()})
    store.set("VM", ref, metrics=metrics, domid=-1, memory_overhead=overhead(src))
    return ref


def _destroy_partial(call: Call, vm: str, vdis: list[str]) -> None:
    from .vdi import destroy_vdi
    from .vm import destroy
    store = call.store
    with store.lock:
        if store.exists("VM", vm):
            store.set("VM", vm, power_state="Halted", current_operations={})
            destroy(call, vm)
        for vdi in vdis:
            if store.exists("VDI", vdi):
                destroy_vdi(call, vdi)


def _duplicate(call: Call, vm: str, name: str, op: str, disk_op, extra: dict,
               ignore_vdis: list[str] = ()) -> str:
    from .vbd import create as vbd_create
    from .vif import create as vif_create
    store = call.store
    with Operation(call, "VM", vm, op):
        with store.lock:
            src = store.snapshot("VM", vm)
            new = _new_vm(call, src, name, extra)
        made: list[str] = []
        try:
            vbds = [store.snapshot("VBD", v) for v in src["VBDs"]]
            for i, vbd in enumerate(vbds):
                vdi = vbd["VDI"]
                if not vbd["empty"] and vdi != NULL_REF and vdi not in ignore_vdis \
                        and vbd["type"] != "CD":
                    vdi = disk_op(vdi)
                    made.append(vdi)
                elif vbd["type"] != "CD" and vdi in ignore_vdis:
                    continue
                vbd_create(call, {k: vbd[k] for k in ("userdevice", "bootable", "mode", "type",
                                                      "unpluggable", "empty", "other_config",
                                                      "qos_algorithm_type", "qos_algorithm_params")}
                           | {"VM": new, "VDI": vdi})
                call.progress((i + 1) / (len(vbds) + 1))
            for v in src["VIFs"]:
                vif = store.snapshot("VIF", v)
                vif_create(call, {k: vif[k] for k in ("device", "network", "MTU", "other_config",
                                                      "qos_algorithm_type", "qos_algorithm_params",
                                                      "locking_mode", "ipv4_allowed",
                                                      "ipv6_allowed")}
                           | {"VM": new, "MAC": vif["MAC"] if op == "snapshot" else ""})
        except BaseException:
            _destroy_partial(call, new, made)
            raise
        call.backend.refresh("VM", new)
        return new


@api("VM", "snapshot", cancellable=True)
def snapshot(call: Call, vm: str, new_name: str, ignore_vdis: list[str]) -> str:
    from .vdi import snapshot as vdi_snapshot
    return _duplicate(call, vm, new_name, "snapshot", lambda v: vdi_snapshot(call, v, {}),
                      {"is_a_snapshot": True, "snapshot_of": vm, "snapshot_time": now(),
                       "is_a_template": True, "power_state": "Halted",
                       "is_default_template": False}, ignore_vdis)


@api("VM", "clone", cancellable=True)
def clone(call: Call, vm: str, new_name: str) -> str:
    from .vdi import clone as vdi_clone
    src = call.store.get("VM", vm)
    return _duplicate(call, vm, new_name, "clone", lambda v: vdi_clone(call, v, {}),
                      {"is_default_template": False, "is_a_snapshot": False,
                       "snapshot_of": NULL_REF, "power_state": "Halted",
                       "other_config": {k: v for k, v in src["other_config"].items()
                                        if k != "default_template"}})


@api("VM", "copy", cancellable=True)
def copy(call: Call, vm: str, new_name: str, sr: str) -> str:
    from .vdi import copy as vdi_copy
    store = call.store
    if sr != NULL_REF:
        store.get("SR", sr)

    def disk(v: str) -> str:
        target = sr if sr != NULL_REF else store.get("VDI", v)["SR"]
        return vdi_copy(call, v, target, NULL_REF, NULL_REF)
    src = store.get("VM", vm)
    return _duplicate(call, vm, new_name, "copy", disk,
                      {"is_default_template": False, "is_a_snapshot": False,
                       "snapshot_of": NULL_REF, "power_state": "Halted",
                       "other_config": {k: v for k, v in src["other_config"].items()
                                        if k != "default_template"}})


_DISK = re.compile(r"<disk\s+([^>]*?)/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@api("VM", "provision")
def provision(call: Call, vm: str) -> str:
    from .vbd import create as vbd_create
    store = call.store
    with Operation(call, "VM", vm, "provision"):
        rec = store.snapshot("VM", vm)
        disks = [dict(_ATTR.findall(m.group(1)))
                 for m in _DISK.finditer(rec["other_config"].get("disks", ""))]
        pool = store.get("pool", call.backend.pool_ref)
        made: list[str] = []
        vbds: list[str] = []
        try:
            for d in disks:
                sr = d.get("sr") or pool["default_SR"]
                if not store.exists("SR", sr):
                    raise XapiError("DEFAULT_SR_NOT_FOUND", sr)
                vdi = new_vdi(call, sr, f"{rec['name_label']} {d.get('device', '0')}",
                              int(d.get("size", "0")), d.get("type", "system"))
                made.append(vdi)
                vbds.append(vbd_create(call, {
                    "VM": vm, "VDI": vdi, "userdevice": d.get("device", "0"),
                    "bootable": d.get("bootable") == "true", "mode": "RW", "type": "Disk",
                    "empty": False, "other_config": {"owner": "true"},
                    "qos_algorithm_type": "", "qos_algorithm_params": {}}))
        except BaseException:
            from .vdi import destroy_vdi
            with store.lock:
                for vbd in vbds:
                    if store.exists("VBD", vbd):
                        store.destroy("VBD", vbd)
                for vdi in made:
                    destroy_vdi(call, vdi)
            raise
        with store.lock:
            oc = store.get("VM", vm)["other_config"]
            oc.pop("disks", None)
            store.modified("VM", vm)
    return ""
