"""What Cinder's connection info names, and how each kind becomes a VDI of an SR.

Two kinds, with os-brick's connection info keys:

* ``iscsi`` (``target_portal``, ``target_iqn``, ``target_lun``, CHAP in
  ``auth_method``/``auth_username``/``auth_password``): an SR of type
  ``iscsi`` (SM's RawISCSISR, a VDI per LUN) per target, the SR uuid a uuid5
  of portal and IQN, as the old driver's volume_utils made it; the volume is
  the VDI whose ``sm_config:LUNid`` is its LUN.
* ``nfs`` (``export`` ``server:/path``, ``name``, ``options``, ``format``):
  an SR of type ``nfs`` per export, with ``sm_config:nosubdir=true`` so SM
  mounts the export's root, where Cinder's NFS driver keeps its files.  SM's
  FileSR sees only ``<uuid>.vhd`` and ``<uuid>.raw`` files, so the
  ``nfs_volume.py`` dom0 plugin gives the volume's file a second name (a hard
  link) ``<vdi-uuid>.raw``, the VDI uuid a uuid5 of export and file name; a
  scan makes it a raw VDI whose bytes are the volume's.  Only raw volumes
  can be read that way: another ``format`` is refused.

Any other ``driver_volume_type`` (rbd, fibre_channel, ...) is refused with
``VolumeDriverNotFound``.  Secrets (the CHAP password) go into the PBD's
``device_config`` and nowhere else: no ``repr``, log line or error shows them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from nova import exception

from nova_xenapi import plugins
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession

#: uuid5 namespace of volume SRs and NFS volume VDIs: the same target gives the same uuid on
#: every host
NAMESPACE = uuid.UUID("9b0f1e64-3f2c-5b7e-9a51-0c8d6e2f4a17")
DEFAULT_PORT = 3260


def _volume_id(connection_info: dict) -> str:
    data = connection_info.get("data") or {}
    return str(data.get("volume_id") or connection_info.get("serial") or "")


@dataclass(frozen=True)
class IscsiVolume:
    volume_id: str
    address: str
    port: int
    iqn: str
    lun: int
    chap_user: str | None
    chap_password: str | None

    sr_type = "iscsi"

    @classmethod
    def from_connection_info(cls, connection_info: dict) -> IscsiVolume:
        data = connection_info.get("data") or {}
        volume_id = _volume_id(connection_info)
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
        return str(uuid.uuid5(NAMESPACE, f"{self.address}/{self.port}/{self.iqn}"))

    @property
    def sr_label(self) -> str:
        return f"volumes on {self.iqn}"

    @property
    def sm_config(self) -> dict[str, str]:
        return {}

    def device_config(self) -> dict[str, str]:
        config = {"target": self.address, "port": str(self.port), "targetIQN": self.iqn}
        if self.chap_user:
            config.update(chapuser=self.chap_user, chappassword=self.chap_password or "")
        return config

    def find_vdi(self, session: XenAPISession, sr: str) -> str:
        """The LUN's VDI, after a scan of the target's SR."""
        session.call_xenapi("SR.scan", sr)
        for vdi in session.call_xenapi("SR.get_VDIs", sr):
            if session.call_xenapi("VDI.get_sm_config", vdi).get("LUNid") == str(self.lun):
                return vdi
        raise exception.StorageError(reason=f"volume {self.volume_id}: LUN {self.lun} of "
                                            f"{self.iqn} is not on the target")

    def is_its_vdi(self, vdi_record: dict, sr_uuid: str) -> bool:
        return vdi_record["sm_config"].get("LUNid") == str(self.lun) and sr_uuid == self.sr_uuid

    def let_go(self, session: XenAPISession, sr: str) -> None:
        """Nothing to undo: the LUN's VDI stays the target's."""

    def __repr__(self) -> str:  # never the CHAP password
        return f"IscsiVolume({self.volume_id}, {self.address}:{self.port}/{self.iqn}/{self.lun})"


_NFS_VERSION = re.compile(r"(?:nfs)?vers=([0-9.]+)")


@dataclass(frozen=True)
class NfsVolume:
    volume_id: str
    server: str
    path: str
    name: str
    nfsversion: str | None
    options: str

    sr_type = "nfs"

    @classmethod
    def from_connection_info(cls, connection_info: dict) -> NfsVolume:
        data = connection_info.get("data") or {}
        volume_id = _volume_id(connection_info)
        export, name = str(data.get("export") or ""), str(data.get("name") or "")
        server, sep, path = export.rpartition(":")
        if not sep or not server or not path.startswith("/") or not name:
            raise exception.InvalidVolume(reason=f"volume {volume_id}: the nfs connection info "
                                                 "needs export (server:/path) and name")
        fmt = str(data.get("format") or "raw")
        if fmt != "raw":
            raise exception.InvalidVolume(reason=(
                f"volume {volume_id} is a {fmt} file; XenServer's NFS SR reads raw volume "
                "files only (set the Cinder NFS backend's volumes to raw)"))
        version, rest = None, []
        for opt in re.split(r"[,\s]+", str(data.get("options") or "")):
            if not opt or opt == "-o":
                continue
            m = _NFS_VERSION.fullmatch(opt)
            if m:
                version = m.group(1)
            else:
                rest.append(opt)
        return cls(volume_id, server.strip("[]"), path.rstrip("/") or "/", name, version,
                   ",".join(rest))

    @property
    def export(self) -> str:
        return f"{self.server}:{self.path}"

    @property
    def sr_uuid(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"nfs/{self.export}"))

    @property
    def vdi_uuid(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"nfs/{self.export}/{self.name}"))

    @property
    def sr_label(self) -> str:
        return f"volumes on {self.export}"

    @property
    def sm_config(self) -> dict[str, str]:
        return {"nosubdir": "true"}  # the export's root, where Cinder keeps the files

    def device_config(self) -> dict[str, str]:
        config = {"server": self.server, "serverpath": self.path}
        if self.nfsversion:
            config["nfsversion"] = self.nfsversion
        if self.options:
            config["options"] = self.options
        return config

    def _plugin_args(self, session: XenAPISession, sr: str) -> dict[str, str]:
        return {"sr_uuid": session.call_xenapi("SR.get_uuid", sr), "name": self.name,
                "vdi_uuid": self.vdi_uuid}

    def find_vdi(self, session: XenAPISession, sr: str) -> str:
        """The volume file's VDI: linked as ``<vdi-uuid>.raw`` in dom0, then scanned."""
        plugins.call(session, "nfs_volume.py", "link_volume", self._plugin_args(session, sr))
        session.call_xenapi("SR.scan", sr)
        try:
            return session.call_xenapi("VDI.get_by_uuid", self.vdi_uuid)
        except XenAPIError as exc:
            if exc.code != "UUID_INVALID":
                raise
        raise exception.StorageError(reason=f"volume {self.volume_id}: {self.name} on "
                                            f"{self.export} is not a VDI after a scan")

    def is_its_vdi(self, vdi_record: dict, sr_uuid: str) -> bool:
        return vdi_record["uuid"] == self.vdi_uuid

    def let_go(self, session: XenAPISession, sr: str) -> None:
        """The file's second name goes (the volume's own stays), and the SR forgets its VDI."""
        plugins.call(session, "nfs_volume.py", "unlink_volume", self._plugin_args(session, sr))
        session.call_xenapi("SR.scan", sr)

    def __repr__(self) -> str:
        return f"NfsVolume({self.volume_id}, {self.export}/{self.name})"


Volume = IscsiVolume | NfsVolume
KINDS = {"iscsi": IscsiVolume, "nfs": NfsVolume}


def from_connection_info(connection_info: dict) -> Volume:
    """The volume Cinder's connection info names; VolumeDriverNotFound for another kind."""
    kind = connection_info.get("driver_volume_type")
    if kind not in KINDS:
        raise exception.VolumeDriverNotFound(driver_type=kind)
    return KINDS[kind].from_connection_info(connection_info)
