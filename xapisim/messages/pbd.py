"""PBD.*: create, plug, unplug, destroy, with xapi's rules (ocaml/xapi/xapi_pbd.ml).

``plug`` asks the SR's backend to attach (SM's ``sr_attach``): a file SR
appears under dom0's ``/var/run/sr-mount`` (an introduced ``nfs`` SR first
"mounts" its export, ``nfs_sr.py``), and an ``iscsi`` SR logs in to its real
target (``iscsi_sr.py``), failing with SM's errors.  ``unplug`` refuses
while a VDI of the SR has a plugged VBD on that host (``VDI_IN_USE``).
``destroy`` refuses a plugged PBD.  A PBD's ``device_config`` may hold
secrets (CHAP), so errors never quote it.
"""
from __future__ import annotations

from ..call import Call
from ..datamodel import classes
from ..errors import XapiError
from ..generic import constructor_values
from ..registry import api


@api("PBD", "create")
def create(call: Call, struct: dict) -> str:
    """xapi_pbd.ml ``create_common``: one PBD per host and SR; SRmaster is internal."""
    values = constructor_values(classes()["PBD"], struct)
    store = call.store
    with store.lock:
        host, sr = values["host"], values["SR"]
        store.get("host", host)
        store.get("SR", sr)
        for pbd in store.get("SR", sr)["PBDs"]:
            if store.get("PBD", pbd)["host"] == host:
                raise XapiError("PBD_EXISTS", sr, host, pbd)
        config = dict(values.get("device_config") or {})
        if "SRmaster" in config:
            raise XapiError("VALUE_NOT_SUPPORTED", "SRmaster", config["SRmaster"],
                            "This key is for internal use only")
        return store.create("PBD", {"host": host, "SR": sr, "device_config": config,
                                    "currently_attached": False, "other_config": {}})


@api("PBD", "plug")
def plug(call: Call, pbd: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("PBD", pbd)
        if rec["currently_attached"]:
            return ""
        sr = rec["SR"]
        srec = store.get("SR", sr)
        if not srec["shared"]:  # check_sharing_constraint
            for other in srec["PBDs"]:
                o = store.get("PBD", other)
                if o["currently_attached"] and o["host"] != rec["host"]:
                    raise XapiError("SR_NOT_SHARABLE", sr, o["host"])
        sr_uuid, sr_type, host = srec["uuid"], srec["type"], rec["host"]
        config = dict(rec["device_config"])
        sm_config = dict(srec["sm_config"])
    disks = call.backend.disks
    if disks.is_lun_sr(sr_type):
        from ..iscsi_sr import Target
        Target(config).attach()  # outside the lock: it talks to the target
    elif disks.is_file_sr(sr_type):
        built = call.backend.state_dir / "srs" / sr_uuid
        if sr_type == "nfs" and (built.is_symlink() or not built.is_dir()):  # introduced
            from ..nfs_sr import export_dir
            disks.mount_export(sr_uuid, export_dir(call.backend.config.nfs_exports, config,
                                                   sm_config, sr_uuid))
        disks.attach_sr(host, sr_uuid, sr_type)
    elif sr_type not in ("lvm", "udev", "iso"):
        raise XapiError("NOT_IMPLEMENTED", f"PBD.plug of a {sr_type} SR: xapisim has no "
                                           f"{sr_type} backend")
    with store.lock:
        if store.exists("PBD", pbd):
            store.set("PBD", pbd, currently_attached=True)
    return ""


@api("PBD", "unplug")
def unplug(call: Call, pbd: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("PBD", pbd)
        if not rec["currently_attached"]:
            return ""
        srec = store.get("SR", rec["SR"])
        in_use = [vdi for vdi in srec["VDIs"]
                  if any(store.get("VBD", vbd)["currently_attached"]
                         and store.get("VM", store.get("VBD", vbd)["VM"])["resident_on"] == rec["host"]
                         for vbd in store.get("VDI", vdi)["VBDs"] if store.exists("VBD", vbd))]
        if in_use:
            raise XapiError("VDI_IN_USE", *in_use)
        call.backend.disks.detach_sr(rec["host"], srec["uuid"], srec["type"])
        store.set("PBD", pbd, currently_attached=False)
    return ""


@api("PBD", "destroy")
def destroy(call: Call, pbd: str) -> str:
    store = call.store
    with store.lock:
        if store.get("PBD", pbd)["currently_attached"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
        store.destroy("PBD", pbd)
    return ""
