"""xapisim's introduced ``nfs`` SRs: an export kept in a directory, raw VDIs beside VHDs.

The rules are SM's NFSSR (device_config server/serverpath/nfsversion,
sm_config:nosubdir, libs/sm/drivers/NFSSR.py) and FileSR (``<uuid>.raw``
files are raw VDIs whose size is the file's length, with no resize and no
snapshot, libs/sm/drivers/FileSR.py), with SM's error codes
(XE_SR_ERRORCODES.xml).  No NFS server runs: ``SimConfig.nfs_exports`` maps
the export to a directory.
"""
from __future__ import annotations

import os
import time
import urllib.request
import uuid

import pytest
import XenAPI

from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs

MIB = 1 << 20


@pytest.fixture
def nfs(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       nfs_exports={"192.0.2.10:/srv/cinder": str(export)})
    with Simulator(config, tmp_path / "state") as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "nfs-tests")
        yield sim, s, export


def _introduce(x, dconf: dict, nosubdir: bool = True, sr_uuid: str = "") -> tuple[str, str]:
    sr = x.SR.introduce(sr_uuid, "volumes", "", "nfs", "", True,
                        {"nosubdir": "true"} if nosubdir else {})
    pbd = x.PBD.create({"host": x.host.get_all()[0], "SR": sr, "device_config": dconf,
                        "other_config": {}})
    return sr, pbd


def _url(sim, s, what: str, vdi: str) -> str:
    return f"{sim.url}/{what}_raw_vdi?session_id={s._session}&vdi={vdi}&format=raw"


def test_a_raw_file_in_the_export_is_a_vdi_whose_bytes_are_the_file(nfs):
    sim, s, export = nfs
    x = s.xenapi
    vdi_uuid = str(uuid.uuid4())
    (export / "volume-1").write_bytes(b"cinder" * 1000)
    os.truncate(export / "volume-1", 4 * MIB)
    (export / f"{vdi_uuid}.raw").hardlink_to(export / "volume-1")
    sr, pbd = _introduce(x, {"server": "192.0.2.10", "serverpath": "/srv/cinder"})
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    (vdi,) = x.SR.get_VDIs(sr)  # volume-1 itself is no VDI: FileSR lists *.vhd and *.raw only
    rec = x.VDI.get_record(vdi)
    assert (rec["uuid"], rec["virtual_size"], rec["sm_config"]) == (vdi_uuid, str(4 * MIB),
                                                                  {"type": "raw"})
    with urllib.request.urlopen(_url(sim, s, "export", vdi)) as resp:
        assert resp.read(6000) == b"cinder" * 1000
    task = x.task.create("import", "")
    req = urllib.request.Request(_url(sim, s, "import", vdi) + f"&task_id={task}",
                                 data=b"xapi" * 1024, method="PUT")
    urllib.request.urlopen(req).read()
    while x.task.get_status(task) == "pending":  # xapi answers before the body is written
        time.sleep(0.02)
    assert x.task.get_status(task) == "success"
    x.task.destroy(task)
    assert (export / "volume-1").read_bytes()[:4096] == b"xapi" * 1024  # the same file

    os.truncate(export / "volume-1", 8 * MIB)  # Cinder grew the volume
    x.SR.scan(sr)
    assert x.VDI.get_virtual_size(vdi) == str(8 * MIB)
    for call, code in ((lambda: x.VDI.resize(vdi, str(16 * MIB)), "SR_BACKEND_FAILURE_38"),
                       (lambda: x.VDI.snapshot(vdi, {}), "SR_BACKEND_FAILURE_46")):
        with pytest.raises(XenAPI.Failure) as e:
            call()
        assert e.value.details[0] == code
    x.PBD.unplug(pbd)
    x.SR.forget(sr)
    assert sorted(p.name for p in export.iterdir()) == sorted(["volume-1", f"{vdi_uuid}.raw"])


@pytest.mark.parametrize("dconf, code", [
    ({"serverpath": "/srv/cinder"}, "SR_BACKEND_FAILURE_102"),
    ({"server": "192.0.2.10"}, "SR_BACKEND_FAILURE_101"),
    ({"server": "192.0.2.10", "serverpath": "/srv/cinder", "nfsversion": "2"},
     "SR_BACKEND_FAILURE_72"),
    ({"server": "192.0.2.11", "serverpath": "/srv/cinder"}, "SR_BACKEND_FAILURE_73"),
    ({"server": "192.0.2.10", "serverpath": "/srv/other"}, "SR_BACKEND_FAILURE_73"),
])
def test_a_mount_that_cannot_work_fails_as_sm_does(nfs, dconf, code):
    sim, s, export = nfs
    x = s.xenapi
    sr, pbd = _introduce(x, dconf)
    with pytest.raises(XenAPI.Failure) as e:
        x.PBD.plug(pbd)
    assert e.value.details[0] == code
    assert x.PBD.get_currently_attached(pbd) is False


def test_without_nosubdir_the_sr_lives_in_a_directory_named_by_its_uuid(nfs):
    sim, s, export = nfs
    x = s.xenapi
    sr_uuid = str(uuid.uuid4())
    dconf = {"server": "192.0.2.10", "serverpath": "/srv/cinder"}
    sr, pbd = _introduce(x, dconf, nosubdir=False, sr_uuid=sr_uuid)
    with pytest.raises(XenAPI.Failure) as e:
        x.PBD.plug(pbd)  # serverpath/<uuid> is not there
    assert e.value.details[0] == "SR_BACKEND_FAILURE_73"
    (export / sr_uuid).mkdir()
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    assert x.SR.get_VDIs(sr) == []
    dom0 = sim.dom0_of("127.0.0.1") / "var/run/sr-mount" / sr_uuid
    assert dom0.resolve() == (export / sr_uuid).resolve()
