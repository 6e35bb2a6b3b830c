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
from . import vtpm as vtpms
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
            with store.lock:
                for vtpm in src["VTPMs"]:  # xapi_vm_clone.ml
                    vtpms.copy_to(store, vtpm, new)
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
VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")


def provision_disks(xml: str) -> list[dict]:
    """The disks of a template's ``other_config:disks``, as xapi_templates.ml reads them.

    Every ``<disk>`` needs ``device``, ``size``, ``sr`` and ``bootable``; an
    unknown or missing ``type`` is ``system``.  Anything else is xapi's
    ``Parse_failure``, which reaches the client as an INTERNAL_ERROR.
    """
    if not xml:
        return []
    disks = []
    for m in _DISK.finditer(xml):
        attrs = dict(_ATTR.findall(m.group(1)))
        if not {"device", "size", "sr", "bootable"} <= attrs.keys() or \
                not attrs["size"].lstrip("-").isdigit():
            raise XapiError("INTERNAL_ERROR", "Xapi_templates.Parse_failure")
        if attrs.get("type") not in VDI_TYPES:
            attrs["type"] = "system"
        disks.append(attrs)
    return disks


@api("VM", "provision")
def provision(call: Call, vm: str) -> str:
    """xapi_vm.ml ``provision``: the VM stops being a template first, then gets its disks.

    Each disk's ``sr`` is an SR uuid (clients such as ``xe vm-install`` write
    it into the template's XML; an empty one is ``UUID_INVALID``).  VDIs are
    named after the VBD's userdevice and described "Created by template
    provisioner", VBDs carry ``other_config:owner``, and only system disks are
    not unpluggable.  If a disk fails, the VBDs and VDIs made so far are
    destroyed, but ``is_a_template`` stays false, as in xapi.
    """
    from .vbd import create as vbd_create
    from .vdi import destroy_vdi
    store = call.store
    with Operation(call, "VM", vm, "provision"):
        with store.lock:
            store.set("VM", vm, is_a_template=False)
            rec = store.snapshot("VM", vm)
        disks = provision_disks(rec["other_config"].get("disks", ""))
        vm_uuid = rec["uuid"]
        made: list[tuple[str, str]] = []
        try:
            for i, d in enumerate(disks):
                hit = store.by_uuid.get(d["sr"])
                if hit is None or hit[0] != "SR":
                    raise XapiError("UUID_INVALID", "sr", d["sr"])
                sr = hit[1]
                vdi = new_vdi(call, sr, "", int(d["size"]), d["type"],
                              {"name_description": "Created by template provisioner",
                               "sm_config": {"vmhint": vm_uuid}})
                vbd = vbd_create(call, {
                    "VM": vm, "VDI": vdi, "userdevice": d["device"],
                    "bootable": d["bootable"] == "true", "mode": "RW", "type": "Disk",
                    "unpluggable": d["type"] != "system", "empty": False,
                    "other_config": {"owner": ""}, "qos_algorithm_type": "",
                    "qos_algorithm_params": {}})
                made.append((vbd, vdi))
                with store.lock:
                    store.set("VDI", vdi, name_label=store.get("VBD", vbd)["userdevice"])
                call.progress(0.1 + 0.8 * (i + 1) / len(disks))
        except BaseException:
            with store.lock:
                for vbd, vdi in made:
                    if store.exists("VBD", vbd):
                        store.destroy("VBD", vbd)
                    destroy_vdi(call, vdi)
            raise
        with store.lock:
            oc = store.get("VM", vm)["other_config"]
            oc.pop("disks", None)
            oc.pop("postinstall", None)
            store.modified("VM", vm)
    return ""
