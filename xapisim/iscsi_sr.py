"""The ``iscsi`` SR: one VDI per LUN of a real iSCSI target, as SM's RawISCSISR does.

This is the SR type that XenServer 8 and XCP-ng 8.3 still ship for a raw LUN
per VDI: xapi-project/sm ``libs/sm/drivers/RawISCSISR.py``, which handles
type ``iscsi`` on top of ``BaseISCSI.py`` and ``LUNperVDI.py``.  The target is
real: this module talks to it with libiscsi's userspace tools (``iscsi-ls``,
``iscsi-readcapacity16``, ``iscsi-inq``), and VDI bytes move through
``qemu-img``'s libiscsi driver (``iscsi://`` URLs).  No kernel initiator is
used.

What comes from SM:

* The PBD's ``device_config`` keys: ``target``, ``targetIQN``, ``port``
  (default 3260), ``chapuser``/``chappassword``, and ``SCSIid``.
* Its errors, as ``SR_BACKEND_FAILURE_<code>`` with SM's text
  (XE_SR_ERRORCODES.xml, plus ``[opterr=...]`` where SM gives one):
  * 95 ``ConfigTargetMissing``, 96 ``ConfigTargetIQNMissing``,
    142 ``ISCSIPort``;
  * 141 ``ISCSITarget``: the portal does not answer;
  * 83 ``ISCSIDiscovery``: the IQN is not offered;
  * 68 ``ISCSILogin``: a bad or missing CHAP;
  * 107 ``ConfigSCSIid``: the ``SCSIid`` is not on the target;
  * 46 ``VDIUnavailable``: a LUN that is not there.
* The VDIs a scan makes: ``sm_config`` holds ``LUNid``, ``SCSIid`` and
  ``backend-kind=vbd``, the VDI uuid is the md5 of the SCSIid
  (``scsiutil.gen_uuid_from_string(getuniqueserial)``), and the size is the
  LUN's.
* Which VDI operations the type allows: create picks the smallest unmanaged
  LUN that is big enough, and delete only unmanages it. There is no resize
  and no snapshot.

What differs: SM takes the SCSIid from ``scsi_id`` (page 0x83, an NAA
designator where the target gives one). ``iscsi-inq`` cannot print binary
designators, so here the SCSIid is built from the T10 vendor designator as
``scsi_id`` formats one: ``1`` + the text with whitespace made ``_``. The
CHAP password reaches the tools only through ``LIBISCSI_CHAP_PASSWORD``,
never a command line, and is removed from anything they print.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import XapiError
from .sm_errors import sm_error

DEFAULT_PORT = 3260



def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise XapiError("INTERNAL_ERROR", f"{name} not found: install libiscsi-bin (xapisim's "
                                          "iscsi SR uses libiscsi's tools)")
    return path


@dataclass(frozen=True)
class Lun:
    lun_id: int
    size: int
    scsi_id: str

    @property
    def vdi_uuid(self) -> str:
        """scsiutil.gen_uuid_from_string(md5sum of the SCSIid)."""
        h = hashlib.md5(self.scsi_id.encode()).hexdigest()
        return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def sm_config(self) -> dict[str, str]:
        return {"LUNid": str(self.lun_id), "SCSIid": self.scsi_id, "backend-kind": "vbd"}


class Target:
    """One PBD's view of its target, from ``device_config`` (BaseISCSI.load's checks)."""

    def __init__(self, dconf: dict[str, str]) -> None:
        if not dconf.get("target"):
            raise sm_error("ConfigTargetMissing")
        self.address = dconf["target"].split(",")[0]
        port = dconf.get("port") or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise sm_error("ISCSIPort")
        self.port = int(port)
        if not dconf.get("targetIQN"):
            raise sm_error("ConfigTargetIQNMissing")
        self.iqn = dconf["targetIQN"]
        self.chapuser = dconf.get("chapuser") if dconf.get("chappassword") else None
        self._password = dconf.get("chappassword") or ""
        self.scsi_id = dconf.get("SCSIid")

    @property
    def portal(self) -> str:
        return f"{self.address}:{self.port}"

    def url(self, lun: int | None = None) -> str:
        """The libiscsi URL (the CHAP user but never the password)."""
        user = f"{self.chapuser}@" if self.chapuser else ""
        tail = f"{self.iqn}/{lun}" if lun is not None else ""
        return f"iscsi://{user}{self.portal}/{tail}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LIBISCSI_CHAP_PASSWORD"}
        if self.chapuser:
            env["LIBISCSI_CHAP_PASSWORD"] = self._password
        return env

    def scrub(self, text: str) -> str:
        return text.replace(self._password, "<hidden>") if self._password else text

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(list(argv), capture_output=True, text=True, env=self.env(),
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise sm_error("ISCSITarget", f"{argv[0]} timed out") from None
        return subprocess.CompletedProcess(r.args, r.returncode, self.scrub(r.stdout),
                                           self.scrub(r.stderr))

    # -- what PBD.plug does (BaseISCSI.attach) -----------------------------
    def attach(self) -> None:
        """Check the portal, discovery and login as SM's attach does (and the SCSIid's LUN)."""
        try:
            socket.create_connection((self.address, self.port), timeout=5).close()
        except OSError:
            raise sm_error("ISCSITarget") from None
        found = self.run(_tool("iscsi-ls"), f"iscsi://{self.portal}/")
        offered = re.findall(r"^Target:(\S+) Portal:", found.stdout, re.M)
        if self.iqn not in offered:
            raise sm_error("ISCSIDiscovery", "check target settings")
        lun_ids = self._login()
        if self.scsi_id and not any(self._scsi_id(n) == self.scsi_id for n in lun_ids):
            raise sm_error("ConfigSCSIid")

    def _login(self) -> list[int]:
        """The target's disk LUN numbers, after logging in (ISCSILogin if it is refused)."""
        listing = self.run(_tool("iscsi-ls"), "-s", self.url())
        if "Failed to log in" in listing.stderr + listing.stdout or listing.returncode != 0:
            raise sm_error("ISCSILogin", listing.stderr.strip().splitlines()[-1][:200]
                           if listing.stderr.strip() else None)
        return [int(n) for n in re.findall(r"^Lun:(\d+)\s+Type:DIRECT_ACCESS", listing.stdout, re.M)]

    def luns(self) -> list[Lun]:
        """The target's disk LUNs with their sizes and SCSIids (what SR.scan reports)."""
        return [Lun(n, self._size(n), self._scsi_id(n)) for n in self._login()]

    def _size(self, lun: int) -> int:
        r = self.run(_tool("iscsi-readcapacity16"), self.url(lun))
        m = re.search(r"Total size:(\d+)", r.stdout)
        if r.returncode != 0 or not m:
            raise sm_error("VDIUnavailable", f"LUN {lun}: {r.stderr.strip()[:200]}")
        return int(m.group(1))

    def _scsi_id(self, lun: int) -> str:
        r = self.run(_tool("iscsi-inq"), "-e", "1", "-c", "131", self.url(lun))
        ids = re.findall(r"Designator Type:\(1\) T10_VENDORT_ID\nDesignator:\[([^\]]*)\]", r.stdout)
        if r.returncode != 0 or not ids:
            raise sm_error("VDIUnavailable", f"LUN {lun} has no device identification")
        return "1" + re.sub(r"\s", "_", ids[0].strip())


def target_of(store, sr: str) -> Target:
    """The target of an SR, from a plugged PBD's device_config (SRUnavailable if none)."""
    with store.lock:
        pbds = [store.get("PBD", p) for p in store.get("SR", sr)["PBDs"]]
        attached = [p for p in pbds if p["currently_attached"]]
        if not attached:
            raise sm_error("SRUnavailable")
        return Target(dict(attached[0]["device_config"]))


def run_qemu_img(target: Target, *args: str) -> None:
    """qemu-img on a LUN URL; its errors name the LUN, never the CHAP password."""
    from .disks import qemu_img
    r = target.run(qemu_img(), *args, timeout=3600)
    if r.returncode != 0:
        raise XapiError("VDI_IO_ERROR", r.stderr.strip()[:300] or "qemu-img failed")


def read_into(target: Target, lun: int, dst: Path, fmt: str = "raw") -> None:
    """The LUN's bytes into a new file ``dst`` in ``fmt``."""
    opts = ["-o", "subformat=dynamic,force_size=on"] if fmt == "vpc" else []
    run_qemu_img(target, "convert", "-f", "raw", "-O", fmt, *opts, target.url(lun), str(dst))


def write_from(target: Target, lun: int, src: Path, fmt: str = "raw") -> None:
    """``src``'s contents onto the LUN, from its first byte (the rest of the LUN stays)."""
    run_qemu_img(target, "convert", "-n", "-f", fmt, "-O", "raw", str(src), target.url(lun))
