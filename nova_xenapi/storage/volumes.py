"""Cinder volumes on XAPI: an SR per iSCSI target or NFS export, the volume's VDI, a VBD per
attachment.

This follows the old driver's volume_utils/volumeops.  What the connection
info names, and how it becomes a VDI, is ``volume_sources``; here:

- the SR is introduced (shared, so a server can live-migrate inside its pool
  with its volumes) with a PBD on this host holding the target in
  ``device_config``, and that PBD is plugged;
- the volume's VDI is attached with a VBD, hot-plugged if the VM runs;
- when the last VBD of the SR's VDIs goes, the SR is forgotten (PBD
  unplugged and destroyed, ``SR.forget``), so nothing piles up on the host.

Nothing here ever destroys a volume's VDI or writes its bytes: the data is
Cinder's.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from nova import exception
from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.rollback import Rollback
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
from nova_xenapi.storage.volume_sources import KINDS, Volume, from_connection_info

LOG = logging.getLogger(__name__)

SR_MARK = "nova_volume_sr"  # other_config key on the SRs this module introduced


def connector(session: XenAPISession, my_ip: str, host_name: str) -> dict[str, Any]:
    """What Cinder needs to export a volume to this host: its IQN, its address, its name."""
    rec = session.get_record("host", session.host_ref) or {}
    iqn = rec.get("iscsi_iqn") or rec.get("other_config", {}).get("iscsi_iqn", "")
    return {"ip": my_ip, "initiator": iqn, "host": host_name, "multipath": False,
            "platform": "x86_64", "os_type": "linux"}


def _sr_lock(sr_uuid: str):
    return lockutils.lock(f"xenapi-volume-sr-{sr_uuid}")


def connect(session: XenAPISession, volume: Volume) -> tuple[str, str]:
    """The (SR, VDI) of ``volume``: the target's SR introduced and plugged here if it is not
    yet, then the LUN's VDI.  A failure leaves no SR or PBD that was not there before."""
    with _sr_lock(volume.sr_uuid):
        sr, made = _find_or_introduce(session, volume)
        try:
            return sr, volume.find_vdi(session, sr)
        except BaseException:
            with contextlib.suppress(XenAPIError, HostConnectionError, exception.NovaException):
                _let_go_if_unused(session, sr, volume)
            if made:
                _forget(session, sr)
            raise


def _existing_sr(session: XenAPISession, volume: Volume) -> str | None:
    """The SR of the volume's target, if the pool has it."""
    try:
        return session.call_xenapi("SR.get_by_uuid", volume.sr_uuid)
    except XenAPIError as exc:
        if exc.code == "UUID_INVALID":
            return None
        raise


def _find_or_introduce(session: XenAPISession, volume: Volume) -> tuple[str, bool]:
    sr = _existing_sr(session, volume)
    if sr is not None:
        _ensure_plugged(session, sr, volume)
        return sr, False
    LOG.info("Introducing the SR %s for volume %s", volume.sr_label, volume.volume_id)
    # shared: every host of the pool may plug it, so a server can live-migrate with its volumes
    sr = session.call_xenapi("SR.introduce", volume.sr_uuid, volume.sr_label,
                             "Cinder volumes (nova-xenapi)", volume.sr_type, "", True,
                             volume.sm_config)
    try:
        session.call_xenapi("SR.add_to_other_config", sr, SR_MARK, "true")
        _ensure_plugged(session, sr, volume)
    except BaseException:
        _forget(session, sr)
        raise
    return sr, True


def _ensure_plugged(session: XenAPISession, sr: str, volume: Volume) -> None:
    """A plugged PBD of this host; one made here and not plugged is destroyed again."""
    for pbd in session.call_xenapi("SR.get_PBDs", sr):
        rec = session.get_record("PBD", pbd)
        if rec and rec["host"] == session.host_ref:
            if not rec["currently_attached"]:
                session.call_xenapi("PBD.plug", pbd)
            return
    pbd = session.call_xenapi("PBD.create", {"host": session.host_ref, "SR": sr,
                                             "device_config": volume.device_config(),
                                             "other_config": {}})
    try:
        session.call_xenapi("PBD.plug", pbd)
    except BaseException:
        session.call_xenapi("PBD.destroy", pbd)
        raise


def is_volume(session: XenAPISession, vdi: str) -> bool:
    """Whether a VDI is a Cinder volume's (its SR is one this module introduced)."""
    sr = session.call_xenapi("VDI.get_SR", vdi)
    return session.call_xenapi("SR.get_other_config", sr).get(SR_MARK) == "true"


def mappings(block_device_info: dict | None) -> list[dict]:
    """The volume mappings of Nova's block_device_info."""
    return list((block_device_info or {}).get("block_device_mapping") or [])


def in_use(session: XenAPISession, sr: str) -> bool:
    """Whether any VDI of the SR still has a VBD."""
    return any(session.call_xenapi("VDI.get_VBDs", vdi) for vdi in session.call_xenapi("SR.get_VDIs", sr))


def _its_vdi(session: XenAPISession, sr: str, volume: Volume) -> str | None:
    sr_uuid = session.call_xenapi("SR.get_uuid", sr)
    for vdi in session.call_xenapi("SR.get_VDIs", sr):
        rec = session.get_record("VDI", vdi)
        if rec and volume.is_its_vdi(rec, sr_uuid):
            return vdi
    return None


def release(session: XenAPISession, volume: Volume) -> None:
    """The volume's VDI let go of if nothing uses it, and its SR forgotten if no VDI of it has
    a VBD any more (another volume of the same target may still be attached: then it stays)."""
    with _sr_lock(volume.sr_uuid):
        sr = _existing_sr(session, volume)
        if sr is None:
            return
        _let_go_if_unused(session, sr, volume)
        if not in_use(session, sr):
            _forget(session, sr)


def _let_go_if_unused(session: XenAPISession, sr: str, volume: Volume) -> None:
    """What ``find_vdi`` set up for the volume goes, unless a VBD uses its VDI."""
    vdi = _its_vdi(session, sr, volume)
    if (vdi is None or not session.call_xenapi("VDI.get_VBDs", vdi)) and _plugged_here(session, sr):
        volume.let_go(session, sr)


def _plugged_here(session: XenAPISession, sr: str) -> bool:
    return any(session.call_xenapi("PBD.get_host", pbd) == session.host_ref
               and session.call_xenapi("PBD.get_currently_attached", pbd)
               for pbd in session.call_xenapi("SR.get_PBDs", sr))


def release_here(session: XenAPISession, volume: Volume) -> None:
    """This host lets go of the volume's SR (a server moved away with it): its PBD goes if no
    VM resident here uses the SR, and the SR goes when no host has it plugged and no VBD uses it."""
    with _sr_lock(volume.sr_uuid):
        sr = _existing_sr(session, volume)
        if sr is None:
            return
        here = session.host_ref
        for vdi in session.call_xenapi("SR.get_VDIs", sr):
            for vbd in session.call_xenapi("VDI.get_VBDs", vdi):
                vm_ref = session.call_xenapi("VBD.get_VM", vbd)
                if session.call_xenapi("VM.get_resident_on", vm_ref) == here:
                    return
        for pbd in session.call_xenapi("SR.get_PBDs", sr):
            if session.call_xenapi("PBD.get_host", pbd) == here:
                _drop_pbd(session, pbd)
        if not session.call_xenapi("SR.get_PBDs", sr) and not in_use(session, sr):
            session.call_xenapi("SR.forget", sr)


def connect_all(session: XenAPISession, block_device_info: dict | None) -> None:
    """Every volume of ``block_device_info`` reachable from this host (a live migration's
    destination); what this call connected is released again if one fails."""
    done = []
    try:
        for bdm in mappings(block_device_info):
            volume = from_connection_info(bdm["connection_info"])
            connect(session, volume)
            done.append(volume)
    except BaseException:
        for volume in done:
            release_here(session, volume)
        raise


def release_all_here(session: XenAPISession, block_device_info: dict | None) -> None:
    for bdm in mappings(block_device_info):
        release_here(session, from_connection_info(bdm["connection_info"]))


def _drop_pbd(session: XenAPISession, pbd: str) -> None:
    if session.call_xenapi("PBD.get_currently_attached", pbd):
        session.call_xenapi("PBD.unplug", pbd)
    session.call_xenapi("PBD.destroy", pbd)


def _forget(session: XenAPISession, sr: str) -> None:
    """Unplug and destroy the SR's PBDs, then forget the SR (the LUNs are not touched)."""
    for pbd in session.call_xenapi("SR.get_PBDs", sr):
        _drop_pbd(session, pbd)
    session.call_xenapi("SR.forget", sr)


def device_number(mountpoint: str) -> str:
    """The VBD userdevice of a mountpoint Nova chose: /dev/xvdb (or sdb, vdb) is 1."""
    m = re.fullmatch(r"(?:/dev/)?(?:xvd|sd|vd|hd)([a-z]+)", mountpoint or "")
    if not m:
        raise exception.InvalidDevicePath(path=mountpoint)
    n = 0
    for ch in m.group(1):
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return str(n - 1)


def device_name(userdevice: int) -> str:
    """The guest's name of a userdevice: 1 is /dev/xvdb, 26 is /dev/xvdaa."""
    letters, n = "", userdevice + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return f"/dev/xvd{letters}"


def _userdevices(session: XenAPISession, vm_ref: str) -> set[str]:
    return {session.call_xenapi("VBD.get_userdevice", v) for v in session.call_xenapi("VM.get_VBDs", vm_ref)}


def next_device_name(session: XenAPISession, vm_ref: str | None, names: list[str],
                     first: int = 1) -> str:
    """The first device from ``first`` on, free both on the VM (its VBDs) and among Nova's
    mappings."""
    taken = {int(device_number(n)) for n in names if n}
    if vm_ref is not None:
        taken |= {int(d) for d in _userdevices(session, vm_ref)}
    n = first
    while n in taken:
        n += 1
    return device_name(n)


def attach(session: XenAPISession, vm_ref: str, vdi: str, userdevice: str, hotplug: bool) -> str:
    """A VBD of the volume's VDI at ``userdevice``, plugged at once if the VM runs."""
    vbd = disks.create_vbd(session, vm_ref, vdi, userdevice)
    if hotplug:
        try:
            session.call_xenapi("VBD.plug", vbd)
        except BaseException:
            session.remove("VBD.destroy", vbd)
            raise
    return vbd


def find_vbd(session: XenAPISession, vm_ref: str, volume: Volume) -> str | None:
    """The VM's VBD of the volume."""
    for vbd in session.call_xenapi("VM.get_VBDs", vm_ref):
        rec = session.get_record("VBD", vbd)
        if not rec or rec["VDI"] == "OpaqueRef:NULL":
            continue
        vdi = session.get_record("VDI", rec["VDI"])
        if vdi and volume.is_its_vdi(vdi, session.call_xenapi("SR.get_uuid", vdi["SR"])):
            return vbd
    return None


def detach(session: XenAPISession, vm_ref: str, volume: Volume, unplug_retries: int = 10) -> None:
    """Unplug (if plugged) and destroy the VM's VBD of the volume, then release its SR."""
    vbd = find_vbd(session, vm_ref, volume)
    if vbd is not None:
        if session.call_xenapi("VBD.get_currently_attached", vbd):
            disks.unplug_vbd(session, vbd, unplug_retries)
        session.remove("VBD.destroy", vbd)
    release(session, volume)


# -- what the driver's volume calls do -------------------------------------------
def attach_to(session: XenAPISession, vm_ref: str, connection_info: dict, mountpoint: str) -> None:
    """attach_volume: the volume at ``mountpoint`` of the VM, hot-plugged if it runs.  If any
    step fails, the SR this call introduced is forgotten again."""
    volume = from_connection_info(connection_info)
    userdevice = device_number(mountpoint)
    if userdevice in _userdevices(session, vm_ref):
        raise exception.InvalidDevicePath(path=mountpoint)
    _, vdi = connect(session, volume)
    try:
        running = session.call_xenapi("VM.get_power_state", vm_ref) == "Running"
        attach(session, vm_ref, vdi, userdevice, hotplug=running)
    except BaseException:
        release(session, volume)
        raise
    LOG.info("Attached volume %s at %s", volume.volume_id, mountpoint)


def detach_from(session: XenAPISession, vm_ref: str | None, connection_info: dict,
                unplug_retries: int = 10) -> None:
    """detach_volume: the VM's VBD of the volume goes, then its SR if nothing else uses it.
    Without a VM (it is gone already) only the SR is released."""
    volume = from_connection_info(connection_info)
    if vm_ref is None:
        release(session, volume)
        return
    detach(session, vm_ref, volume, unplug_retries)


def swap(session: XenAPISession, vm_ref: str, old_info: dict, new_info: dict,
         unplug_retries: int = 10) -> None:
    """swap_volume (Cinder migrating or retyping an attached volume): the old volume's bytes
    are copied into the new one and the new one takes the old one's device.

    XAPI cannot mirror a disk into a VDI the guest keeps writing to, so a
    running guest's disk is hot-unplugged for the copy (``VDI.copy`` into
    the new volume's VDI) and the new one hot-plugged at the same device.
    Any failure puts the old volume back where it was and lets go of the new
    one; the old volume's data is only ever read.
    """
    old, new = from_connection_info(old_info), from_connection_info(new_info)
    vbd = find_vbd(session, vm_ref, old)
    if vbd is None:
        raise exception.VolumeNotFound(volume_id=old.volume_id)
    rec = session.get_record("VBD", vbd) or {}
    old_vdi, userdevice, plugged = rec["VDI"], rec["userdevice"], rec["currently_attached"]
    new_sr, new_vdi = connect(session, new)
    with Rollback() as rb:
        rb.add(f"volume {new.volume_id}'s SR", release, session, new)
        have, need = (int(session.call_xenapi("VDI.get_virtual_size", v)) for v in (new_vdi, old_vdi))
        if have < need:
            raise exception.InvalidVolume(reason=(
                f"volume {new.volume_id} has {have} bytes, fewer than the {need} of volume "
                f"{old.volume_id} it should take over"))
        if plugged:
            disks.unplug_vbd(session, vbd, unplug_retries)
            rb.add(f"volume {old.volume_id} back into the guest", session.call_xenapi,
                   "VBD.plug", vbd)
        session.call_async("VDI.copy", old_vdi, new_sr, "OpaqueRef:NULL", new_vdi, timeout=None)
        session.call_xenapi("VBD.destroy", vbd)
        rb.add(f"volume {old.volume_id} at {userdevice} again", _reattach, session, vm_ref,
               old_vdi, userdevice, plugged)
        attach(session, vm_ref, new_vdi, userdevice, hotplug=plugged)
    release(session, old)
    LOG.info("Swapped volume %s for %s at device %s", old.volume_id, new.volume_id, userdevice)


def _reattach(session: XenAPISession, vm_ref: str, vdi: str, userdevice: str, plugged: bool) -> None:
    attach(session, vm_ref, vdi, userdevice, hotplug=plugged)


def extend(session: XenAPISession, connection_info: dict, requested_size: int) -> int:
    """extend_volume: Cinder grew the LUN or file; a scan of its SR makes the VDI as big.
    Returns the size XAPI now reports."""
    volume = from_connection_info(connection_info)
    with _sr_lock(volume.sr_uuid):
        sr = session.call_xenapi("SR.get_by_uuid", volume.sr_uuid)
        vdi = volume.find_vdi(session, sr)
        size = int(session.call_xenapi("VDI.get_virtual_size", vdi))
    if size < requested_size:
        raise exception.StorageError(
            reason=f"volume {volume.volume_id}: its VDI is {size} bytes after a rescan, not "
                   f"the {requested_size} Cinder asked for")
    return size


def detach_all(session: XenAPISession, vm_ref: str, block_device_info: dict | None,
               unplug_retries: int = 10) -> None:
    """Every volume of ``block_device_info`` off the VM (a resize's source)."""
    for bdm in mappings(block_device_info):
        detach(session, vm_ref, from_connection_info(bdm["connection_info"]), unplug_retries)


def attach_all(session: XenAPISession, vm_ref: str, block_device_info: dict | None) -> None:
    """Every volume of ``block_device_info`` on the VM at its device (a reverted resize)."""
    for bdm in mappings(block_device_info):
        if find_vbd(session, vm_ref, from_connection_info(bdm["connection_info"])) is None:
            attach_to(session, vm_ref, bdm["connection_info"], bdm["mount_device"])


def release_all(session: XenAPISession, block_device_info: dict | None) -> None:
    """After the VM went: the SRs of its volumes, if no other VM uses them."""
    for bdm in mappings(block_device_info):
        info = bdm.get("connection_info") or {}
        if info.get("driver_volume_type") in KINDS:
            release(session, from_connection_info(info))
