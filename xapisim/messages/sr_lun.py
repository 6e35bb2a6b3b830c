"""What SR.scan, VDI.introduce, VDI.create and VDI.destroy do on an ``iscsi`` SR (one VDI per LUN).

SM's RawISCSISR with LUNperVDI (xapi-project/sm): a scan makes a VDI for each
LUN the target offers (``sm_config`` LUNid, SCSIid, backend-kind; the uuid
from the SCSIid), updates the size of a LUN that grew, and forgets the VDI
of a LUN that went away unless it is in use.  ``VDI.introduce`` finds its LUN
by ``sm_config:LUNid``.  ``VDI.create`` cannot make a LUN: it claims the
smallest unmanaged one that is big enough (SRNoSpace otherwise).
``VDI.destroy`` only unmanages it (LUNperVDI.delete): the record stays, for a
later create, and the LUN's bytes stay on the target.  (Whether xapi then
drops an unmanaged record is not confirmed.)
"""
from __future__ import annotations

from ..call import Call
from ..iscsi_sr import Lun, target_of
from ..sm_errors import sm_error
from .vdi import sr_info, update_sr_usage, vdi_in_use


def _record(call: Call, sr: str, lun: Lun, extra: dict | None = None) -> str:
    """The VDI of ``lun``, made or brought up to date (a LUN that grew has a bigger VDI)."""
    store = call.store
    with store.lock:
        hits = store.find("VDI", uuid=lun.vdi_uuid)
        if hits:
            ref = hits[0]
            store.set("VDI", ref, virtual_size=lun.size, physical_utilisation=lun.size,
                      sm_config={**store.get("VDI", ref)["sm_config"], **lun.sm_config()},
                      **(extra or {}))
        else:
            values = {"name_label": "", "SR": sr, "virtual_size": lun.size,
                      "physical_utilisation": lun.size, "type": "user", "managed": True,
                      "location": lun.vdi_uuid, "other_config": {}, "sm_config": lun.sm_config(),
                      "xenstore_data": {}}
            ref = store.create("VDI", {**values, **(extra or {})})
            store.change_uuid("VDI", ref, lun.vdi_uuid)
        call.backend.refresh("VDI", ref)
        return ref


def scan(call: Call, sr: str) -> None:
    luns = target_of(call.store, sr).luns()
    for lun in luns:
        _record(call, sr, lun)
    store = call.store
    with store.lock:
        present = {lun.vdi_uuid for lun in luns}
        for vdi in list(store.get("SR", sr)["VDIs"]):
            if store.get("VDI", vdi)["uuid"] not in present and not vdi_in_use(store, vdi):
                store.destroy("VDI", vdi)
        store.set("SR", sr, physical_size=sum(lun.size for lun in luns))
    update_sr_usage(call, sr)


def introduce(call: Call, sr: str, sm_config: dict, extra: dict) -> str:
    """LUNperVDI.introduce: the LUN named by sm_config:LUNid (VDIUnavailable if none)."""
    if "LUNid" not in sm_config:
        raise sm_error("VDIUnavailable")
    wanted = str(sm_config["LUNid"])
    for lun in target_of(call.store, sr).luns():
        if str(lun.lun_id) == wanted:
            ref = _record(call, sr, lun, extra)
            update_sr_usage(call, sr)
            return ref
    raise sm_error("VDIUnavailable", f"no LUN {wanted} on the target")


def claim(call: Call, sr: str, size: int, values: dict) -> str:
    """LUNperVDI.create: the smallest unmanaged LUN of at least ``size`` becomes managed."""
    scan(call, sr)
    store = call.store
    with store.lock:
        free = [(int(r["virtual_size"]), v) for v in store.get("SR", sr)["VDIs"]
                if not (r := store.get("VDI", v))["managed"] and int(r["virtual_size"]) >= size]
        if not free:
            raise sm_error("SRNoSpace")
        ref = min(free)[1]
        store.set("VDI", ref, managed=True, **values)
        call.backend.refresh("VDI", ref)
        return ref


def is_lun_sr(call: Call, sr: str) -> bool:
    return call.backend.disks.is_lun_sr(sr_info(call.store, sr)[1])


def unmanage(call: Call, vdi: str) -> None:
    call.store.set("VDI", vdi, managed=False)
    call.backend.refresh("VDI", vdi)
