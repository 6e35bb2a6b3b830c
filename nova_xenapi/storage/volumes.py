"""Cinder volumes on XAPI: an ``iscsi`` SR per target, the LUN's VDI, a VBD per attachment.

This follows the old driver's volume_utils/volumeops:
- Cinder's ``iscsi`` connection info (os-brick's keys: ``target_portal``,
  ``target_iqn``, ``target_lun``, ``auth_method``/``auth_username``/
  ``auth_password``) becomes an SR of type ``iscsi``;
- the SR uuid is derived from the target (portal and IQN), so every volume
  of one target shares it;
- the SR is introduced with a PBD on this host holding the target in
  ``device_config``, and that PBD is plugged;
- the volume is the VDI of its LUN (``sm_config:LUNid``) and is attached with
  a VBD.

When the last VBD of the SR's VDIs goes, the SR is forgotten (PBD unplugged
and destroyed, ``SR.forget``), so nothing piles up on the host. Nothing here
ever destroys a volume's VDI or writes its bytes: the data is Cinder's.

Any other ``driver_volume_type`` (rbd, fibre_channel, nfs, ...) is refused
with ``VolumeDriverNotFound``. The CHAP secret goes into the PBD's
device_config and nowhere else: not into a log line or an error.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from nova import exception
from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

LOG = logging.getLogger(__name__)

#: uuid5 namespace of volume SRs: the same target gives the same SR uuid on every host
SR_NAMESPACE = uuid.UUID("9b0f1e64-3f2c-5b7e-9a51-0c8d6e2f4a17")
SR_MARK = "nova_volume_sr"  # other_config key on the SRs this module introduced
DEFAULT_PORT = 3260


@dataclass(frozen=True)
class IscsiVolume:
    volume_id: str
    address: str
    port: int
    iqn: str
    lun: int
    chap_user: str | None
    chap_password: str | None

    @classmethod
    def from_connection_info(cls, connection_info: dict) -> IscsiVolume:
        kind = connection_info.get("driver_volume_type")
        if kind != "iscsi":
            raise exception.VolumeDriverNotFound(driver_type=kind)
        data = connection_info.get("data") or {}
        volume_id = str(data.get("volume_id") or "")
        portal, iqn, lun = data.get("target_portal"), data.get("target_iqn"), data.get("target_lun")
        if not portal or not iqn or lun is None:
            raise exception.InvalidVolume(reason=f"volume {volume_id}: the iscsi connection info "
                                                 "needs target_portal, target_iqn and target_lun")
        m = re.fullmatch(r"\[?([^\]]+?)\]?(?::(\d+))?", str(portal))
        if not m:
            raise exception.InvalidVolume(reason=f"volume {volume_id}: bad target_portal {portal!r}")
        user = password = None
        if str(data.get("auth_method") or "").upper() == "CHAP":
            user, password = data.get("auth_username"), data.get("auth_password")
        return cls(volume_id, m.group(1), int(m.group(2) or DEFAULT_PORT), str(iqn), int(lun),
                   user, password)

    @property
    def sr_uuid(self) -> str:
        return str(uuid.uuid5(SR_NAMESPACE, f"{self.address}/{self.port}/{self.iqn}"))

    def device_config(self) -> dict[str, str]:
        config = {"target": self.address, "port": str(self.port), "targetIQN": self.iqn}
        if self.chap_user:
            config.update(chapuser=self.chap_user, chappassword=self.chap_password or "")
        return config

    def __repr__(self) -> str:  # never the CHAP password
        return f"IscsiVolume({self.volume_id}, {self.address}:{self.port}/{self.iqn}/{self.lun})"


def connector(session: XenAPISession, my_ip: str, host_name: str) -> dict[str, Any]:
    """What Cinder needs to export a volume to this host: its IQN, its address, its name."""
    rec = session.get_record("host", session.host_ref) or {}
    iqn = rec.get("iscsi_iqn") or rec.get("other_config", {}).get("iscsi_iqn", "")
    return {"ip": my_ip, "initiator": iqn, "host": host_name, "multipath": False,
            "platform": "x86_64", "os_type": "linux"}


def _sr_lock(sr_uuid: str):
    return lockutils.lock(f"xenapi-volume-sr-{sr_uuid}")


def connect(session: XenAPISession, volume: IscsiVolume) -> tuple[str, str]:
    """The (SR, VDI) of ``volume``: the target's SR introduced and plugged here if it is not
    yet, then the LUN's VDI.  A failure leaves no SR or PBD that was not there before."""
    with _sr_lock(volume.sr_uuid):
        sr, made = _find_or_introduce(session, volume)
        try:
            return sr, _lun_vdi(session, sr, volume)
        except BaseException:
            if made:
                _forget(session, sr)
            raise


def _existing_sr(session: XenAPISession, volume: IscsiVolume) -> str | None:
    """The SR of the volume's target, if the pool has it."""
    try:
        return session.call_xenapi("SR.get_by_uuid", volume.sr_uuid)
    except XenAPIError as exc:
        if exc.code == "UUID_INVALID":
            return None
        raise


def _find_or_introduce(session: XenAPISession, volume: IscsiVolume) -> tuple[str, bool]:
    sr = _existing_sr(session, volume)
    if sr is not None:
        _ensure_plugged(session, sr, volume)
        return sr, False
    LOG.info("Introducing the SR of iSCSI target %s:%s %s for volume %s", volume.address,
             volume.port, volume.iqn, volume.volume_id)
    # shared: every host of the pool may plug it, so a server can live-migrate with its volumes
    sr = session.call_xenapi("SR.introduce", volume.sr_uuid, f"volumes on {volume.iqn}",
                             "Cinder volumes (nova-xenapi)", "iscsi", "", True, {})
    try:
        session.call_xenapi("SR.add_to_other_config", sr, SR_MARK, "true")
        _ensure_plugged(session, sr, volume)
    except BaseException:
        _forget(session, sr)
        raise
    return sr, True


def _ensure_plugged(session: XenAPISession, sr: str, volume: IscsiVolume) -> None:
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


def _lun_vdi(session: XenAPISession, sr: str, volume: IscsiVolume) -> str:
    session.call_xenapi("SR.scan", sr)
    for vdi in session.call_xenapi("SR.get_VDIs", sr):
        if session.call_xenapi("VDI.get_sm_config", vdi).get("LUNid") == str(volume.lun):
            return vdi
    raise exception.StorageError(reason=f"volume {volume.volume_id}: LUN {volume.lun} of "
                                        f"{volume.iqn} is not on the target")


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


def release(session: XenAPISession, volume: IscsiVolume) -> None:
    """Forget the volume's SR if no VDI of it has a VBD any more (another volume of the same
    target may still be attached: then it stays)."""
    with _sr_lock(volume.sr_uuid):
        sr = _existing_sr(session, volume)
        if sr is None:
            return
        if not in_use(session, sr):
            _forget(session, sr)


def release_here(session: XenAPISession, volume: IscsiVolume) -> None:
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
            volume = IscsiVolume.from_connection_info(bdm["connection_info"])
            connect(session, volume)
            done.append(volume)
    except BaseException:
        for volume in done:
            release_here(session, volume)
        raise


def release_all_here(session: XenAPISession, block_device_info: dict | None) -> None:
    for bdm in mappings(block_device_info):
        release_here(session, IscsiVolume.from_connection_info(bdm["connection_info"]))


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
            session.call_xenapi("VBD.destroy", vbd)
            raise
    return vbd


def find_vbd(session: XenAPISession, vm_ref: str, sr_uuid: str, lun: int) -> str | None:
    """The VM's VBD of the volume (its VDI in the target's SR, on that LUN)."""
    for vbd in session.call_xenapi("VM.get_VBDs", vm_ref):
        rec = session.get_record("VBD", vbd)
        if not rec or rec["VDI"] == "OpaqueRef:NULL":
            continue
        vdi = session.get_record("VDI", rec["VDI"])
        if not vdi or vdi["sm_config"].get("LUNid") != str(lun):
            continue
        if session.call_xenapi("SR.get_uuid", vdi["SR"]) == sr_uuid:
            return vbd
    return None


def detach(session: XenAPISession, vm_ref: str, volume: IscsiVolume, unplug_retries: int = 10) -> None:
    """Unplug (if plugged) and destroy the VM's VBD of the volume, then release its SR."""
    vbd = find_vbd(session, vm_ref, volume.sr_uuid, volume.lun)
    if vbd is not None:
        if session.call_xenapi("VBD.get_currently_attached", vbd):
            disks.unplug_vbd(session, vbd, unplug_retries)
        session.call_xenapi("VBD.destroy", vbd)
    release(session, volume)


# -- what the driver's volume calls do -------------------------------------------
def attach_to(session: XenAPISession, vm_ref: str, connection_info: dict, mountpoint: str) -> None:
    """attach_volume: the volume at ``mountpoint`` of the VM, hot-plugged if it runs.  If any
    step fails, the SR this call introduced is forgotten again."""
    volume = IscsiVolume.from_connection_info(connection_info)
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
    volume = IscsiVolume.from_connection_info(connection_info)
    if vm_ref is None:
        release(session, volume)
        return
    detach(session, vm_ref, volume, unplug_retries)


def extend(session: XenAPISession, connection_info: dict, requested_size: int) -> int:
    """extend_volume: Cinder grew the LUN; a scan of its SR makes the VDI as big.  Returns the
    size XAPI now reports."""
    volume = IscsiVolume.from_connection_info(connection_info)
    with _sr_lock(volume.sr_uuid):
        sr = session.call_xenapi("SR.get_by_uuid", volume.sr_uuid)
        vdi = _lun_vdi(session, sr, volume)
        size = int(session.call_xenapi("VDI.get_virtual_size", vdi))
    if size < requested_size:
        raise exception.StorageError(
            reason=f"volume {volume.volume_id}: the LUN is {size} bytes after a rescan, not "
                   f"the {requested_size} Cinder asked for")
    return size


def detach_all(session: XenAPISession, vm_ref: str, block_device_info: dict | None,
               unplug_retries: int = 10) -> None:
    """Every volume of ``block_device_info`` off the VM (a resize's source)."""
    for bdm in mappings(block_device_info):
        detach(session, vm_ref, IscsiVolume.from_connection_info(bdm["connection_info"]),
               unplug_retries)


def attach_all(session: XenAPISession, vm_ref: str, block_device_info: dict | None) -> None:
    """Every volume of ``block_device_info`` on the VM at its device (a reverted resize)."""
    for bdm in mappings(block_device_info):
        volume = IscsiVolume.from_connection_info(bdm["connection_info"])
        if find_vbd(session, vm_ref, volume.sr_uuid, volume.lun) is None:
            attach_to(session, vm_ref, bdm["connection_info"], bdm["mount_device"])


def release_all(session: XenAPISession, block_device_info: dict | None) -> None:
    """After the VM went: the SRs of its volumes, if no other VM uses them."""
    for bdm in mappings(block_device_info):
        info = bdm.get("connection_info") or {}
        if info.get("driver_volume_type") == "iscsi":
            release(session, IscsiVolume.from_connection_info(info))
