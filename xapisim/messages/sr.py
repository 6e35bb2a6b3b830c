"""SR.*: scan, supported types, space accounting refresh, and the VHD garbage collector.

``SR.scan`` on a file SR does what the storage manager's scan does there:
every ``<uuid>.vhd`` file in the SR directory without a VDI record gets one
(its uuid and location from the file name, its virtual size from the VHD
footer, ``sm_config:vhd-parent`` naming the parent of a differencing disk,
``managed`` unless the VHD is hidden), and records whose file has gone are
removed.  This is how VHDs put into the SR by hand or by a dom0 plugin become
VDIs.  A file that is not a readable VHD, or whose parent is missing, is
skipped (the real storage manager logs and skips it too).

``collect_garbage`` removes hidden VHDs that no VHD of the SR uses as a
parent any more, with their unmanaged records: what the storage manager's
garbage collector does after the last child of a base copy is deleted
(asynchronously on a real host; at once here).  Coalescing a single child
into its parent is not simulated.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..call import Call
from ..registry import api
from ..vhd import DynamicVhd, VhdError
from .vdi import sr_info, update_sr_usage

_VHD_NAME = re.compile(r"\A([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.vhd\Z")


def _vhd_files(call: Call, sr: str) -> dict[str, Path] | None:
    """``<uuid>.vhd`` files of a file SR by uuid; None for an SR that keeps no files."""
    disks = call.backend.disks
    sr_uuid, sr_type = sr_info(call.store, sr)
    if not disks.is_file_sr(sr_type):
        return None
    return {m.group(1): f for f in disks.sr_dir(sr_uuid).iterdir() if (m := _VHD_NAME.match(f.name))}


def _scan_files(call: Call, sr: str) -> None:
    store = call.store
    disks = call.backend.disks
    sr_uuid, sr_type = sr_info(store, sr)
    on_disk = _vhd_files(call, sr)
    if on_disk is None:
        return
    known = {store.get("VDI", v)["uuid"]: v for v in store.get("SR", sr)["VDIs"]}
    for uuid, path in on_disk.items():
        if uuid in known:
            continue
        try:
            with DynamicVhd(str(path)) as vhd:
                size, hidden = vhd.size, vhd.hidden
                parent = Path(vhd.parent.path) if vhd.parent else None
        except VhdError:
            continue  # not a VHD xapisim can read: the real SM would log and skip it too
        sm_config = {"vhd-parent": parent.stem} if parent else {}
        ref = store.create("VDI", {"name_label": "base copy" if hidden else "", "SR": sr,
                                   "virtual_size": size, "type": "user", "managed": not hidden,
                                   "read_only": hidden, "location": uuid, "other_config": {},
                                   "sm_config": sm_config, "xenstore_data": {}})
        store.change_uuid("VDI", ref, uuid)
        store.set("VDI", ref, physical_utilisation=disks.physical_size(sr_uuid, sr_type, uuid, size))
        call.backend.refresh("VDI", ref)
    for uuid, ref in known.items():
        rec = store.get("VDI", ref)
        if uuid not in on_disk and not rec["VBDs"]:
            store.destroy("VDI", ref)


def collect_garbage(call: Call, sr: str) -> None:
    """Delete hidden VHDs of a file SR that are no VHD's parent, with their records."""
    store = call.store
    while True:
        files = _vhd_files(call, sr)
        if files is None:
            return
        parents, hidden = set(), {}
        for f in files.values():
            try:
                with DynamicVhd(str(f)) as vhd:
                    if vhd.parent:
                        parents.add(Path(vhd.parent.path).name)
                    if vhd.hidden:
                        hidden[f.name] = f
            except VhdError:
                continue
        removed = False
        records = {store.get("VDI", v)["uuid"]: v for v in store.get("SR", sr)["VDIs"]}
        for name, f in hidden.items():
            ref = records.get(f.stem)
            if name in parents or (ref is not None and (store.get("VDI", ref)["managed"]
                                                        or store.get("VDI", ref)["VBDs"])):
                continue
            f.unlink()
            removed = True
            if ref is not None:
                store.destroy("VDI", ref)
        if not removed:
            return


@api("SR", "scan")
def scan(call: Call, sr: str) -> str:
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
    return ["ext", "nfs", "lvm", "lvmoiscsi", "iso", "udev", "file"]
