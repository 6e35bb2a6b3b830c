"""VBD.*: create with device rules, plug/unplug, insert/eject, destroy."""
from __future__ import annotations

from .. import guest_devices
from ..call import Call
from ..datamodel import NULL_REF, classes
from ..errors import XapiError
from ..generic import constructor_values
from ..registry import api
from .vdi import sr_info


@api("VBD", "create")
def create(call: Call, struct: dict) -> str:
    store = call.store
    values = constructor_values(classes()["VBD"], struct)
    with store.lock:
        vm = values["VM"]
        vmrec = store.get("VM", vm)
        vdi = values.get("VDI", NULL_REF)
        empty = bool(values.get("empty", False))
        if not empty:
            store.get("VDI", vdi)
        elif values.get("type") != "CD":
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", "OpaqueRef:NULL")
        dev = values.get("userdevice", "")
        if dev == "autodetect":
            free = [str(i) for i in range(16)
                    if str(i) not in {store.get("VBD", v)["userdevice"] for v in vmrec["VBDs"]}]
            if not free:
                raise XapiError("INVALID_DEVICE", dev)
            dev = free[0]
        if not dev.isdigit():
            raise XapiError("INVALID_DEVICE", dev)
        for other in vmrec["VBDs"]:
            if store.get("VBD", other)["userdevice"] == dev:
                raise XapiError("DEVICE_ALREADY_EXISTS", dev)
        values.update(userdevice=dev, currently_attached=False, VDI=vdi if not empty else vdi,
                      empty=empty)
        ref = store.create("VBD", values)
        metrics = store.create("VBD_metrics", {})
        store.set("VBD", ref, metrics=metrics)
        call.backend.refresh("VBD", ref)
        if vdi != NULL_REF and store.exists("VDI", vdi):
            call.backend.refresh("VDI", vdi)
        return ref


@api("VBD", "destroy")
def destroy(call: Call, vbd: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VBD", vbd)
        if rec["currently_attached"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "VBD currently attached to a running VM")
        if rec.get("metrics", NULL_REF) != NULL_REF and store.exists("VBD_metrics", rec["metrics"]):
            store.destroy("VBD_metrics", rec["metrics"])
        store.destroy("VBD", vbd)
        if rec["VDI"] != NULL_REF and store.exists("VDI", rec["VDI"]):
            call.backend.refresh("VDI", rec["VDI"])
    return ""


def _running_vm(store, rec: dict) -> dict:
    vm = store.get("VM", rec["VM"])
    if vm["power_state"] != "Running":
        raise XapiError("VM_BAD_POWER_STATE", rec["VM"], "running", vm["power_state"].lower())
    return vm


@api("VBD", "plug")
def plug(call: Call, vbd: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VBD", vbd)
        _running_vm(store, rec)
        if rec["currently_attached"]:
            raise XapiError("DEVICE_ALREADY_ATTACHED", vbd)
        if not rec["empty"]:
            vdi = rec["VDI"]
            for other in store.get("VDI", vdi)["VBDs"]:
                o = store.get("VBD", other)
                if other != vbd and o["currently_attached"] and not store.get("VDI", vdi)["sharable"] \
                        and (o["mode"] == "RW" or rec["mode"] == "RW"):
                    raise XapiError("VDI_IN_USE", vdi, "plug")
        dev = rec["device"] or "xvd" + "abcdefghijklmnop"[int(rec["userdevice"]) % 16]
        _expose(call, rec, dev)
        store.set("VBD", vbd, currently_attached=True, device=dev)
        call.backend.refresh("VBD", vbd)
        if rec["VDI"] != NULL_REF:
            call.backend.refresh("VDI", rec["VDI"])
    return ""


def _device_file(call: Call, rec: dict, dev: str):
    """(device file, VDI facts): dom0's disks always, other guests' with SimConfig.device_dir."""
    store = call.store
    if rec["empty"] or rec["VDI"] == NULL_REF:
        return None
    vm = store.get("VM", rec["VM"])
    device_dir = call.backend.config.device_dir
    if vm["is_control_domain"]:
        # dom0's disks appear in its own /dev, where plugins look for them
        path = call.backend.dom0_root(vm["resident_on"]) / "dev" / dev
    elif device_dir:
        path = guest_devices.device_path(device_dir, vm["uuid"], dev)
    else:
        return None
    vdi = store.get("VDI", rec["VDI"])
    sr_uuid, sr_type = sr_info(store, vdi["SR"])
    return path, sr_uuid, sr_type, vdi["uuid"]


def _expose(call: Call, rec: dict, dev: str) -> None:
    found = _device_file(call, rec, dev)
    if found:
        path, sr_uuid, sr_type, vdi_uuid = found
        guest_devices.expose(call.backend.disks, sr_uuid, sr_type, vdi_uuid, path)


def _withdraw(call: Call, rec: dict) -> None:
    found = _device_file(call, rec, rec["device"])
    if found:
        path, sr_uuid, sr_type, vdi_uuid = found
        guest_devices.withdraw(call.backend.disks, sr_uuid, sr_type, vdi_uuid, path)


def _unplug(call: Call, vbd: str, force: bool) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VBD", vbd)
        _running_vm(store, rec)
        if not rec["currently_attached"]:
            raise XapiError("DEVICE_ALREADY_DETACHED", vbd)
        if not force and not rec["unpluggable"]:
            raise XapiError("VBD_NOT_UNPLUGGABLE", vbd)
        _withdraw(call, rec)
        store.set("VBD", vbd, currently_attached=False)
        call.backend.refresh("VBD", vbd)
        if rec["VDI"] != NULL_REF:
            call.backend.refresh("VDI", rec["VDI"])
    return ""


@api("VBD", "unplug")
def unplug(call: Call, vbd: str) -> str:
    return _unplug(call, vbd, False)


@api("VBD", "unplug_force")
def unplug_force(call: Call, vbd: str) -> str:
    return _unplug(call, vbd, True)


@api("VBD", "eject")
def eject(call: Call, vbd: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VBD", vbd)
        if rec["type"] != "CD":
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if rec["empty"]:
            raise XapiError("VBD_IS_EMPTY", vbd)
        store.set("VBD", vbd, VDI=NULL_REF, empty=True)
        call.backend.refresh("VBD", vbd)
    return ""


@api("VBD", "insert")
def insert(call: Call, vbd: str, vdi: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VBD", vbd)
        store.get("VDI", vdi)
        if rec["type"] != "CD":
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if not rec["empty"]:
            raise XapiError("VBD_NOT_EMPTY", vbd)
        store.set("VBD", vbd, VDI=vdi, empty=False)
        call.backend.refresh("VBD", vbd)
    return ""
