"""SR.*: scan, supported types, space accounting refresh, and the VHD garbage collector.

``SR.scan`` on a file SR does what the storage manager's scan does there:
every ``<uuid>.vhd`` file in the SR directory without a VDI record gets one
(its uuid and location from the file name, its virtual size from the VHD
footer, ``sm_config:vhd-parent`` naming the parent of a differencing disk,
``managed`` unless the VHD is hidden), and records whose file has gone are
removed.  This is how VHDs put into the SR by hand or by a dom0 plugin become
VDIs.  A file that is not a readable VHD, or whose parent is missing, is
skipped (the real storage manager logs and skips it too).  A ``<uuid>.raw``
file is a raw VDI, as in FileSR's ``_loadvdis``: its size is the file's
length (a scan sees a file that grew) and its ``sm_config:type`` is ``raw``.

``collect_garbage`` is the storage manager's garbage collector (run in the
background on a real host; at once here, after a VDI's destroy and on each
scan): a hidden VHD that no VHD uses as a parent any more is deleted, and a
hidden VHD left with a single child is coalesced into that child, so the
chain of a disk whose snapshots are gone shrinks back.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..call import Call
from ..datamodel import NULL_REF
from ..errors import XapiError
from ..registry import api
from ..vhd import DynamicVhd, VhdError, coalesce_parent
from .vdi import scanned_vdi, sr_info, update_sr_usage

_VDI_NAME = re.compile(
    r"\A([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(vhd|raw)\Z")


def _vdi_files(call: Call, sr: str, extensions: tuple[str, ...] = ("vhd", "raw")
               ) -> dict[str, Path] | None:
    """``<uuid>.vhd`` (and ``.raw``) files of a file SR by uuid; None for an SR that keeps
    no files."""
    disks = call.backend.disks
    sr_uuid, sr_type = sr_info(call.store, sr)
    if not disks.is_file_sr(sr_type):
        return None
    return {m.group(1): f for f in disks.sr_dir(sr_uuid).iterdir()
            if (m := _VDI_NAME.match(f.name)) and m.group(2) in extensions}


def _vhd_files(call: Call, sr: str) -> dict[str, Path] | None:
    return _vdi_files(call, sr, ("vhd",))


def _raw_vdi(call: Call, sr: str, uuid: str, path: Path, ref: str | None) -> None:
    """FileVDI.load of a raw file: its size is the file's length, ``sm_config:type`` raw."""
    store = call.store
    size = path.stat().st_size
    if ref is None:
        ref = store.create("VDI", {"name_label": "", "SR": sr, "virtual_size": size,
                                   "type": "user", "managed": True, "location": uuid,
                                   "other_config": {}, "sm_config": {"type": "raw"},
                                   "xenstore_data": {}})
        store.change_uuid("VDI", ref, uuid)
    elif int(store.get("VDI", ref)["virtual_size"]) == size:
        return
    store.set("VDI", ref, virtual_size=size, physical_utilisation=path.stat().st_blocks * 512)
    call.backend.refresh("VDI", ref)


def _scan_files(call: Call, sr: str) -> None:
    store = call.store
    on_disk = _vdi_files(call, sr)
    if on_disk is None:
        return
    known = {store.get("VDI", v)["uuid"]: v for v in store.get("SR", sr)["VDIs"]}
    for uuid, path in on_disk.items():
        if path.suffix == ".raw":
            _raw_vdi(call, sr, uuid, path, known.get(uuid))
            continue
        if uuid in known:
            continue
        try:
            with DynamicVhd(str(path)) as vhd:
                size, hidden = vhd.size, vhd.hidden
                parent = Path(vhd.parent.path) if vhd.parent else None
        except VhdError:
            continue  # not a VHD xapisim can read: the real SM would log and skip it too
        scanned_vdi(call, sr, uuid, size, hidden, parent.stem if parent else None)
    for uuid, ref in known.items():
        rec = store.get("VDI", ref)
        if uuid not in on_disk and not rec["VBDs"]:
            store.destroy("VDI", ref)


def _chains(call: Call, sr: str) -> tuple[dict[str, list[str]], set[str]]:
    """Children of each VHD by uuid, and the hidden VHDs, of a file SR."""
    children: dict[str, list[str]] = {}
    hidden: set[str] = set()
    for uuid, f in (_vhd_files(call, sr) or {}).items():
        try:
            with DynamicVhd(str(f)) as vhd:
                if vhd.parent:
                    children.setdefault(Path(vhd.parent.path).stem, []).append(uuid)
                if vhd.hidden:
                    hidden.add(uuid)
        except VhdError:
            continue
    return children, hidden


def _collectable(store, records: dict[str, str], uuid: str) -> bool:
    """A hidden VHD the collector may remove: no managed record, not plugged anywhere."""
    ref = records.get(uuid)
    return ref is None or not (store.get("VDI", ref)["managed"] or store.get("VDI", ref)["VBDs"])


def collect_garbage(call: Call, sr: str) -> None:
    """What SM's garbage collector does on a file SR, at once rather than in the background:
    hidden VHDs that are nobody's parent are deleted, and a hidden VHD with a single child is
    coalesced into it (unless the child is a leaf whose ``other_config:leaf-coalesce`` is
    ``false``), until neither applies."""
    store = call.store
    disks = call.backend.disks
    sr_uuid, sr_type = sr_info(store, sr)
    if not disks.is_file_sr(sr_type):
        return
    while True:
        children, hidden = _chains(call, sr)
        records = {store.get("VDI", v)["uuid"]: v for v in store.get("SR", sr)["VDIs"]}
        done = False
        for uuid in sorted(hidden):
            if not _collectable(store, records, uuid):
                continue
            kids = children.get(uuid, [])
            if not kids:
                disks.destroy(sr_uuid, sr_type, uuid)
            elif len(kids) == 1 and _may_coalesce(store, records, kids[0], hidden):
                _coalesce(call, sr, records, kids[0])
            else:
                continue
            if uuid in records:
                store.destroy("VDI", records[uuid])
            done = True
            break  # the chains changed: look again
        if not done:
            return


def _may_coalesce(store, records: dict[str, str], child: str, hidden: set[str]) -> bool:
    ref = records.get(child)
    if child in hidden or ref is None:
        return True
    return store.get("VDI", ref)["other_config"].get("leaf-coalesce") != "false"


def _coalesce(call: Call, sr: str, records: dict[str, str], child: str) -> None:
    store = call.store
    disks = call.backend.disks
    sr_uuid, sr_type = sr_info(store, sr)
    path = disks.path(sr_uuid, sr_type, child)
    Path(coalesce_parent(str(path))).unlink()
    ref = records.get(child)
    if ref is None:
        return
    with DynamicVhd(str(path)) as vhd:
        grandparent = Path(vhd.parent.path).stem if vhd.parent else None
    sm_config = {k: v for k, v in store.get("VDI", ref)["sm_config"].items() if k != "vhd-parent"}
    if grandparent:
        sm_config["vhd-parent"] = grandparent
    size = int(store.get("VDI", ref)["virtual_size"])
    store.set("VDI", ref, sm_config=sm_config,
              physical_utilisation=disks.physical_size(sr_uuid, sr_type, child, size))
    call.backend.refresh("VDI", ref)


@api("SR", "scan")
def scan(call: Call, sr: str) -> str:
    from . import sr_lun
    if sr_lun.is_lun_sr(call, sr):
        sr_lun.scan(call, sr)
        return ""
    with call.store.lock:
        call.store.get("SR", sr)
        _scan_files(call, sr)
        collect_garbage(call, sr)
    update_sr_usage(call, sr)
    return ""


@api("SR", "update")
def update(call: Call, sr: str) -> str:
    return scan(call, sr)


@api("SR", "get_supported_types")
def get_supported_types(call: Call) -> list[str]:
    return ["ext", "nfs", "lvm", "lvmoiscsi", "iscsi", "iso", "udev", "file"]


@api("SR", "introduce")
def introduce(call: Call, uuid: str, name_label: str, name_description: str, type: str,
              content_type: str, shared: bool, sm_config: dict) -> str:
    """xapi_sr.ml ``introduce``: a record only, no PBDs; sizes unknown (-1) until a scan."""
    from ..inventory import sr_operations
    sr_type = type.lower()
    store = call.store
    with store.lock:
        if uuid and uuid in store.by_uuid:
            raise XapiError("SR_UUID_EXISTS", uuid)
        ref = store.create("SR", {"name_label": name_label, "name_description": name_description,
                                  "type": sr_type, "content_type": content_type,
                                  "shared": bool(shared), "sm_config": dict(sm_config),
                                  "physical_size": -1, "physical_utilisation": -1,
                                  "virtual_allocation": 0, "introduced_by": NULL_REF,
                                  "allowed_operations": sr_operations(sr_type, content_type)})
        if uuid:
            store.change_uuid("SR", ref, uuid)
        return ref


@api("SR", "forget")
def forget(call: Call, sr: str) -> str:
    """message_forwarding ``SR.forget``: refused while a PBD is plugged (SR_HAS_PBD); then the
    SR's PBDs, its VDI records and the SR go from the database.  No disk is touched."""
    store = call.store
    with store.lock:
        rec = store.get("SR", sr)
        if any(store.get("PBD", p)["currently_attached"] for p in rec["PBDs"]):
            raise XapiError("SR_HAS_PBD", sr)
        for pbd in list(rec["PBDs"]):
            store.destroy("PBD", pbd)
        for vdi in list(rec["VDIs"]):
            for vbd in list(store.get("VDI", vdi)["VBDs"]):
                if store.exists("VBD", vbd):
                    store.set("VBD", vbd, VDI=NULL_REF, empty=True)
            store.destroy("VDI", vdi)
        for pool in store.all("pool"):
            for field in ("default_SR", "suspend_image_SR", "crash_dump_SR"):
                if store.get("pool", pool)[field] == sr:
                    store.set("pool", pool, **{field: NULL_REF})
        store.destroy("SR", sr)
    export = call.backend.state_dir / "srs" / rec["uuid"]
    if export.is_symlink():  # an introduced NFS SR's export: the link goes, the files stay
        export.unlink()
    return ""
