"""VDI.*: create, destroy, clone, snapshot, copy, resize, with SR space accounting."""
from __future__ import annotations

import os
import subprocess
import uuid as uuidlib
from pathlib import Path

from .. import vhd
from ..call import Call
from ..datamodel import NULL_REF, classes
from ..disks import ISO_SR_TYPES, round_size
from ..errors import XapiError
from ..generic import constructor_values
from ..registry import api
from ..sm_errors import sm_error
from ..values import now
from .lifecycle import Operation


def sr_info(store, sr: str) -> tuple[str, str]:
    rec = store.get("SR", sr)
    return rec["uuid"], rec["type"]


def update_sr_usage(call: Call, sr: str) -> None:
    store = call.store
    with store.lock:
        rec = store.get("SR", sr)
        virt = phys = 0
        for vdi in rec["VDIs"]:
            v = store.get("VDI", vdi)
            virt += int(v["virtual_size"])
            phys += int(v["physical_utilisation"])
        store.set("SR", sr, virtual_allocation=virt, physical_utilisation=phys)


def _check_space(call: Call, sr: str, size: int) -> None:
    store = call.store
    rec = store.get("SR", sr)
    free = int(rec["physical_size"]) - (int(rec["virtual_allocation"]) if rec["type"] == "lvm"
                                         else int(rec["physical_utilisation"]))
    if size > free or (rec["type"] != "lvm" and size > int(rec["physical_size"])):
        raise XapiError("SR_FULL", size, max(free, 0))


def _check_sr_usable(call: Call, sr: str, op: str) -> None:
    store = call.store
    rec = store.get("SR", sr)
    if rec["type"] in ISO_SR_TYPES or rec["content_type"] == "iso":
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    if not any(store.get("PBD", p)["currently_attached"] for p in rec["PBDs"]):
        raise XapiError("SR_HAS_NO_PBDS", sr)
    if op not in rec["allowed_operations"]:
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)


def new_vdi(call: Call, sr: str, name: str, size: int, vdi_type: str = "user",
            extra: dict | None = None) -> str:
    """Create a VDI record and its backing file; clean both up on failure."""
    store = call.store
    with store.lock:
        _check_sr_usable(call, sr, "vdi_create")
        if size < 0:
            raise XapiError("INVALID_VALUE", "virtual_size", str(size))
        sr_uuid, sr_type = sr_info(store, sr)
        size = round_size(sr_type, size)
        _check_space(call, sr, size)
        values = {"name_label": name, "SR": sr, "virtual_size": size, "type": vdi_type,
                  "sharable": False, "read_only": False, "managed": True,
                  "location": "", "other_config": {}, "sm_config": {}, "xenstore_data": {}}
        values.update(extra or {})
        ref = store.create("VDI", values)
        uuid = store.get("VDI", ref)["uuid"]
        try:
            call.backend.disks.create(sr_uuid, sr_type, uuid, size)
        except BaseException:
            store.destroy("VDI", ref)
            raise
        store.set("VDI", ref, location=uuid,
                  physical_utilisation=call.backend.disks.physical_size(sr_uuid, sr_type, uuid, size))
        call.backend.refresh("VDI", ref)
        update_sr_usage(call, sr)
        return ref


@api("VDI", "create")
def create(call: Call, struct: dict) -> str:
    values = constructor_values(classes()["VDI"], struct)
    sr = values.pop("SR")
    call.store.get("SR", sr)
    size = values.pop("virtual_size")
    name = values.pop("name_label", "")
    vtype = values.pop("type", "user")
    values.pop("sm_config", None)
    from . import sr_lun
    if sr_lun.is_lun_sr(call, sr):
        with call.store.lock:
            _check_sr_usable(call, sr, "vdi_create")
        return sr_lun.claim(call, sr, int(size), {"name_label": name, "type": vtype, **values})
    return new_vdi(call, sr, name, int(size), vtype, values)


def vdi_in_use(store, vdi: str) -> bool:
    return any(store.tables["VBD"].get(v, {}).get("currently_attached")
               for v in store.get("VDI", vdi)["VBDs"])


def destroy_vdi(call: Call, vdi: str) -> None:
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        sr = rec["SR"]
        sr_uuid, sr_type = sr_info(store, sr)
        call.backend.disks.destroy(sr_uuid, sr_type, rec["uuid"])
        for vbd in list(rec["VBDs"]):
            store.set("VBD", vbd, VDI=NULL_REF, empty=True)
        for snap in list(rec["snapshots"]):
            if store.exists("VDI", snap):
                store.set("VDI", snap, snapshot_of=NULL_REF)
        store.destroy("VDI", vdi)
        if rec["sm_config"].get("vhd-parent"):
            from .sr import collect_garbage
            collect_garbage(call, sr)
        update_sr_usage(call, sr)


@api("VDI", "destroy")
def destroy(call: Call, vdi: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        if vdi_in_use(store, vdi):
            raise XapiError("VDI_IN_USE", vdi, "destroy")
        if rec["current_operations"]:
            raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi,
                            next(iter(rec["current_operations"].values())),
                            next(iter(rec["current_operations"])))
        for r in store.tables["VM"].values():
            if r["suspend_VDI"] == vdi:
                raise XapiError("VDI_IN_USE", vdi, "destroy")
        _check_sr_usable(call, rec["SR"], "vdi_destroy")
        from . import sr_lun
        if sr_lun.is_lun_sr(call, rec["SR"]):
            sr_lun.unmanage(call, vdi)
            return ""
        destroy_vdi(call, vdi)
    return ""


@api("VDI", "introduce")
def introduce(call: Call, uuid: str, name_label: str, name_description: str, sr: str, type: str,
              sharable: bool, read_only: bool, other_config: dict, location: str,
              xenstore_data: dict, sm_config: dict, managed: bool, virtual_size: int,
              physical_utilisation: int, metadata_of_pool: str, is_a_snapshot: bool,
              snapshot_time, snapshot_of: str) -> str:
    """The SR's backend finds the disk (SM's vdi_introduce); only LUN-per-VDI SRs here."""
    store = call.store
    with store.lock:
        store.get("SR", sr)
        _check_sr_usable(call, sr, "vdi_introduce")
    from . import sr_lun
    if not sr_lun.is_lun_sr(call, sr):
        raise XapiError("NOT_IMPLEMENTED", "VDI.introduce: xapisim introduces VDIs only on "
                                           "iscsi SRs (file SRs find theirs with SR.scan)")
    return sr_lun.introduce(call, sr, dict(sm_config), {
        "name_label": name_label, "name_description": name_description, "type": type,
        "sharable": bool(sharable), "read_only": bool(read_only),
        "other_config": dict(other_config), "xenstore_data": dict(xenstore_data)})


@api("VDI", "forget")
def forget(call: Call, vdi: str) -> str:
    store = call.store
    with store.lock:
        sr = store.get("VDI", vdi)["SR"]
        store.destroy("VDI", vdi)
        update_sr_usage(call, sr)
    return ""


def _copy_into(call: Call, src: str, sr: str, name: str, extra: dict, op: str) -> str:
    store = call.store
    with Operation(call, "VDI", src, op):
        with store.lock:
            rec = store.get("VDI", src)
            size = int(rec["virtual_size"])
            new = new_vdi(call, sr, name, size, rec["type"], {
                "name_description": rec["name_description"], "other_config": dict(rec["other_config"]),
                "sharable": rec["sharable"], "xenstore_data": dict(rec["xenstore_data"]), **extra})
        try:
            src_sr = sr_info(store, rec["SR"])
            dst_sr = sr_info(store, sr)
            call.backend.disks.destroy(*dst_sr, store.get("VDI", new)["uuid"])
            call.backend.disks.copy((*src_sr, rec["uuid"]), (*dst_sr, store.get("VDI", new)["uuid"]),
                                    size)
            call.progress(0.9)
        except BaseException:
            destroy_vdi(call, new)
            raise
        with store.lock:
            new_rec = store.get("VDI", new)
            if rec["sm_config"].get("vhd-parent") and src_sr == dst_sr:
                store.set("VDI", new, sm_config={"vhd-parent": rec["sm_config"]["vhd-parent"]})
            store.set("VDI", new, physical_utilisation=call.backend.disks.physical_size(
                *dst_sr, new_rec["uuid"], size))
            update_sr_usage(call, sr)
        return new


def scanned_vdi(call: Call, sr: str, uuid: str, size: int, hidden: bool,
                parent_uuid: str | None) -> str:
    """The record of a VHD found in (or put into) a file SR: a hidden one is a "base copy"."""
    store = call.store
    sr_uuid, sr_type = sr_info(store, sr)
    ref = store.create("VDI", {"name_label": "base copy" if hidden else "", "SR": sr,
                               "virtual_size": size, "type": "user", "managed": not hidden,
                               "read_only": hidden, "location": uuid, "other_config": {},
                               "sm_config": {"vhd-parent": parent_uuid} if parent_uuid else {},
                               "xenstore_data": {}})
    store.change_uuid("VDI", ref, uuid)
    store.set("VDI", ref, physical_utilisation=call.backend.disks.physical_size(
        sr_uuid, sr_type, uuid, size))
    call.backend.refresh("VDI", ref)
    return ref


def _set_parent(call: Call, vdi: str, parent_uuid: str) -> None:
    store = call.store
    store.set("VDI", vdi, sm_config={**store.get("VDI", vdi)["sm_config"], "vhd-parent": parent_uuid})
    call.backend.refresh("VDI", vdi)


def _double_snapshot(call: Call, src: str, extra: dict, op: str) -> str:
    """Clone or snapshot on a file SR, as SM's FileSR does it: the source's VHD becomes a hidden
    base copy and both the source and the new VDI become empty children of it.  Nothing is
    copied.  If the source holds no data of its own, blktap's ``vhd-util snapshot`` links both
    children to its parent instead and no base copy is kept, so cloning an unchanged disk again
    and again does not deepen its chain.  A chain already ``MAX_CHAIN`` deep is refused."""
    store = call.store
    disks = call.backend.disks
    with Operation(call, "VDI", src, op), store.lock:
        rec = store.get("VDI", src)
        sr = rec["SR"]
        sr_uuid, sr_type = sr_info(store, sr)
        size = int(rec["virtual_size"])
        leaf = disks.path(sr_uuid, sr_type, rec["uuid"])
        if vhd.depth(str(leaf)) >= vhd.MAX_CHAIN:
            # SM's SnapshotChainTooLong (its code unverified against a real host)
            raise XapiError("SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", "")
        new = new_vdi(call, sr, rec["name_label"], size, rec["type"], {
            "name_description": rec["name_description"], "other_config": dict(rec["other_config"]),
            "sharable": rec["sharable"], "xenstore_data": dict(rec["xenstore_data"]), **extra})
        base_uuid = str(uuidlib.uuid4())
        base = disks.path(sr_uuid, sr_type, base_uuid)
        copy = disks.path(sr_uuid, sr_type, store.get("VDI", new)["uuid"])
        try:
            os.rename(leaf, base)
            try:
                target = vhd.snapshot_target(str(base))
                vhd.create_child(str(leaf), target, size)
            except BaseException:
                leaf.unlink(missing_ok=True)
                os.rename(base, leaf)
                raise
            copy.unlink()
            vhd.create_child(str(copy), target, size)
            if target == str(base):
                vhd.set_hidden(str(base), True)
            else:
                base.unlink()  # it held nothing: both children hang off its parent
        except (OSError, vhd.VhdError, subprocess.CalledProcessError) as e:
            destroy_vdi(call, new)
            # SM's code for a failed snapshot (unverified against a real host)
            raise XapiError("SR_BACKEND_FAILURE_82", "",
                            f"Failed to snapshot VDI [opterr={e}]", "") from None
        parent_uuid = Path(target).stem
        if target == str(base):
            scanned_vdi(call, sr, base_uuid, size, True, rec["sm_config"].get("vhd-parent"))
        for ref in (src, new):
            _set_parent(call, ref, parent_uuid)
            store.set("VDI", ref, physical_utilisation=disks.physical_size(
                sr_uuid, sr_type, store.get("VDI", ref)["uuid"], size))
        update_sr_usage(call, sr)
        return new


def _refuse_raw_file(call: Call, rec: dict, error: XapiError) -> None:
    """FileSR has no VHD chain for a raw VDI to grow or branch: SM refuses (its errors)."""
    sr_uuid, sr_type = sr_info(call.store, rec["SR"])
    if call.backend.disks.is_raw_file(sr_uuid, sr_type, rec["uuid"]):
        raise error


def _clone_or_snapshot(call: Call, vdi: str, extra: dict, op: str) -> str:
    rec = call.store.get("VDI", vdi)
    _check_sr_usable(call, rec["SR"], "vdi_" + op)
    if call.backend.disks.is_file_sr(sr_info(call.store, rec["SR"])[1]):
        # FileVDI._snapshot reads the VHD depth first, which a raw file has not
        _refuse_raw_file(call, rec, sm_error("VDIUnavailable", "failed to get VHD depth"))
        return _double_snapshot(call, vdi, extra, op)
    return _copy_into(call, vdi, rec["SR"], rec["name_label"], extra, op)


@api("VDI", "clone", cancellable=True)
def clone(call: Call, vdi: str, driver_params: dict) -> str:
    return _clone_or_snapshot(call, vdi, {}, "clone")


@api("VDI", "snapshot", cancellable=True)
def snapshot(call: Call, vdi: str, driver_params: dict) -> str:
    return _clone_or_snapshot(call, vdi, {"is_a_snapshot": True, "snapshot_of": vdi,
                                          "snapshot_time": now(), "read_only": False}, "snapshot")


@api("VDI", "copy", cancellable=True)
def copy(call: Call, vdi: str, sr: str, base_vdi: str, into_vdi: str) -> str:
    store = call.store
    rec = store.get("VDI", vdi)
    if into_vdi not in ("", NULL_REF):
        target = store.get("VDI", into_vdi)
        if int(target["virtual_size"]) < int(rec["virtual_size"]):
            raise XapiError("VDI_INCOMPATIBLE_TYPE", into_vdi, "smaller than source")
        with Operation(call, "VDI", vdi, "copy"):
            call.backend.disks.copy((*sr_info(store, rec["SR"]), rec["uuid"]),
                                    (*sr_info(store, target["SR"]), target["uuid"]),
                                    int(target["virtual_size"]))
        return into_vdi
    if sr in ("", NULL_REF):
        raise XapiError("HANDLE_INVALID", "SR", sr)
    store.get("SR", sr)
    _check_sr_usable(call, sr, "vdi_create")
    return _copy_into(call, vdi, sr, rec["name_label"], {}, "copy")


def _resize(call: Call, vdi: str, size: int, online: bool) -> str:
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        if not online and vdi_in_use(store, vdi):
            raise XapiError("VDI_IN_USE", vdi, "resize")
        sr = rec["SR"]
        _check_sr_usable(call, sr, "vdi_resize")
        _refuse_raw_file(call, rec, sm_error("Unimplemented"))  # FileVDI.resize: VHD only
        sr_uuid, sr_type = sr_info(store, sr)
        size = round_size(sr_type, size)
        if size < int(rec["virtual_size"]):
            # SM's answer to shrinking (unverified against a real host)
            raise XapiError("SR_BACKEND_FAILURE_79", "",
                            "VDI Invalid size [opterr=shrinking not allowed]", "")
        _check_space(call, sr, size - int(rec["virtual_size"]))
        call.backend.disks.resize(sr_uuid, sr_type, rec["uuid"], size)
        store.set("VDI", vdi, virtual_size=size, physical_utilisation=call.backend.disks.physical_size(
            sr_uuid, sr_type, rec["uuid"], size))
        update_sr_usage(call, sr)
    return ""


@api("VDI", "resize")
def resize(call: Call, vdi: str, size: int) -> str:
    return _resize(call, vdi, size, False)


@api("VDI", "resize_online")
def resize_online(call: Call, vdi: str, size: int) -> str:
    return _resize(call, vdi, size, True)


@api("VDI", "set_name_label")
def set_name_label(call: Call, vdi: str, value: str) -> str:
    """An explicit message in xapi (it also tells the SM backend); here the field changes."""
    call.store.set("VDI", vdi, name_label=value)
    return ""


@api("VDI", "set_name_description")
def set_name_description(call: Call, vdi: str, value: str) -> str:
    call.store.set("VDI", vdi, name_description=value)
    return ""


def _change_cbt(call: Call, vdi: str, enabled: bool) -> str:
    """xapi_vdi.ml change_cbt_status, after check_operation_error: the SR's driver must offer
    VDI_CONFIGURE_CBT (SR_OPERATION_NOT_SUPPORTED), a snapshot is refused, and only user and
    system VDIs take it (VDI_INCOMPATIBLE_TYPE).  Nothing is done if CBT is already so."""
    store = call.store
    with store.lock:
        rec = store.get("VDI", vdi)
        if rec["cbt_enabled"] == enabled:
            return ""
        if "vdi_enable_cbt" not in store.get("SR", rec["SR"])["allowed_operations"]:
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", rec["SR"])
        if rec["is_a_snapshot"]:
            raise XapiError("OPERATION_NOT_ALLOWED", f"VDI is a snapshot: {vdi}")
        if rec["type"] not in ("user", "system"):
            raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, rec["type"])
        store.set("VDI", vdi, cbt_enabled=enabled)
    return ""


@api("VDI", "enable_cbt")
def enable_cbt(call: Call, vdi: str) -> str:
    return _change_cbt(call, vdi, True)


@api("VDI", "disable_cbt")
def disable_cbt(call: Call, vdi: str) -> str:
    return _change_cbt(call, vdi, False)
