"""xapisim's ``iscsi`` SR against a real tgtd, through the XenAPI SDK.

The rules come from xapi-project/sm (RawISCSISR, BaseISCSI.attach, LUNperVDI)
and xen-api (xapi_pbd.ml plug/unplug/destroy, xapi_sr.ml introduce and
really_forget, message_forwarding's SR.forget with assert_all_pbds_unplugged,
xapi_sr_operations.ml's capability table).  What xapisim cannot tell the way
SM does (the SCSIid from scsi_id's NAA designator) is in iscsi_sr.py's
docstring.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.request

import pytest
import XenAPI

from nova_xenapi.testing.iscsi_target import IscsiTarget
from tests.conftest import PASSWORD, diskless_vm
from xapisim import SimConfig, Simulator, host_configs

MIB = 1 << 20
IQN = "iqn.2026-12.org.example:volumes"
CHAP = ("nova", "chap-secret-4711")


@pytest.fixture
def rig(tmp_path):
    with IscsiTarget(tmp_path / "tgt") as target:
        files = target.add_target(IQN, [64 * MIB, 32 * MIB], chap=CHAP)
        config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01)
        with Simulator(config, tmp_path / "state") as sim:
            s = XenAPI.Session(sim.url)
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "iscsi-tests")
            yield sim, s, target, files


def dconf(tgt: IscsiTarget, **over) -> dict:
    d = {"target": "127.0.0.1", "port": str(tgt.port), "targetIQN": IQN,
         "chapuser": CHAP[0], "chappassword": CHAP[1]}
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def introduce(x, tgt, **over) -> tuple[str, str]:
    """What the old driver's volume_utils did: SR.introduce, PBD.create, PBD.plug."""
    sr = x.SR.introduce("", "volume", "", "iscsi", "", False, {})
    pbd = x.PBD.create({"host": x.host.get_all()[0], "SR": sr, "device_config": dconf(tgt, **over),
                        "other_config": {}})
    return sr, pbd


def plugged(x, tgt) -> str:
    """An introduced, plugged and scanned SR of the target."""
    sr, pbd = introduce(x, tgt)
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    return sr


def test_introduce_plug_scan_gives_a_vdi_per_lun_as_sm_does(rig):
    sim, s, target, _ = rig
    x = s.xenapi
    sr, pbd = introduce(x, target)
    rec = x.SR.get_record(sr)
    assert rec["PBDs"] == [pbd] and rec["physical_size"] == "-1"  # xapi_sr.ml introduce
    assert "vdi_resize" not in rec["allowed_operations"]  # RawISCSISR has no VDI_RESIZE
    assert x.PBD.get_currently_attached(pbd) is False
    x.PBD.plug(pbd)
    assert x.PBD.get_currently_attached(pbd) is True
    x.SR.scan(sr)
    vdis = sorted((x.VDI.get_record(v) for v in x.SR.get_VDIs(sr)),
                  key=lambda r: int(r["sm_config"]["LUNid"]))
    assert [v["sm_config"]["LUNid"] for v in vdis] == ["1", "2"]
    assert [int(v["virtual_size"]) for v in vdis] == [64 * MIB, 32 * MIB]
    for v in vdis:
        assert v["sm_config"]["backend-kind"] == "vbd" and v["sm_config"]["SCSIid"]
        h = hashlib.md5(v["sm_config"]["SCSIid"].encode()).hexdigest()  # gen_uuid_from_string
        assert v["uuid"] == f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        assert v["managed"] is True
    assert int(x.SR.get_physical_size(sr)) == 96 * MIB
    x.SR.scan(sr)  # a second scan changes nothing
    assert len(x.SR.get_VDIs(sr)) == 2


def test_bytes_written_through_xapi_are_on_the_lun_and_back(rig):
    sim, s, target, files = rig
    x = s.xenapi
    sr = plugged(x, target)
    vdi = next(v for v in x.SR.get_VDIs(sr) if x.VDI.get_sm_config(v)["LUNid"] == "1")
    data = os.urandom(3 * MIB)
    task = x.task.create("import", "")  # xapi answers first, then writes: the task says when
    req = urllib.request.Request(f"{sim.url}/import_raw_vdi?session_id={s._session}&vdi={vdi}"
                                 f"&task_id={task}", data=data, method="PUT")
    urllib.request.urlopen(req).read()
    deadline = time.monotonic() + 60
    while x.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    assert files[0].read_bytes()[:len(data)] == data  # tgtd's backing file holds them
    on_lun = os.urandom(MIB)
    with open(files[0], "r+b") as f:
        f.seek(8 * MIB)
        f.write(on_lun)
    url = f"{sim.url}/export_raw_vdi?session_id={s._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url) as r:
        exported = r.read()
    assert len(exported) == 64 * MIB
    assert exported[:len(data)] == data and exported[8 * MIB:9 * MIB] == on_lun


@pytest.mark.parametrize("over, code, text", [
    ({"port": "1"}, "SR_BACKEND_FAILURE_141", "Unable to connect to ISCSI service on target"),
    ({"targetIQN": "iqn.2026-12.org.example:nope"}, "SR_BACKEND_FAILURE_83", "ISCSI discovery failed"),
    ({"chappassword": "wrong-secret"}, "SR_BACKEND_FAILURE_68", "ISCSI login failed"),
    ({"chapuser": None, "chappassword": None}, "SR_BACKEND_FAILURE_68", "ISCSI login failed"),
    ({"target": None}, "SR_BACKEND_FAILURE_95", "missing the target parameter"),
    ({"targetIQN": None}, "SR_BACKEND_FAILURE_96", "target IQN"),
    ({"port": "http"}, "SR_BACKEND_FAILURE_142", "iSCSI port"),
    ({"SCSIid": "1nothere"}, "SR_BACKEND_FAILURE_107", "SCSIid parameter"),
])
def test_plug_fails_as_sm_does_and_leaves_the_pbd_unplugged(rig, over, code, text):
    sim, s, target, _ = rig
    x = s.xenapi
    sr, pbd = introduce(x, target, **over)
    with pytest.raises(XenAPI.Failure) as e:
        x.PBD.plug(pbd)
    assert e.value.details[0] == code and text in e.value.details[2], e.value.details
    assert CHAP[1] not in str(e.value.details) and "wrong-secret" not in str(e.value.details)
    assert x.PBD.get_currently_attached(pbd) is False
    x.PBD.destroy(pbd)
    x.SR.forget(sr)
    assert sr not in x.SR.get_all()


def test_unplug_refuses_a_vdi_in_use_and_forget_refuses_a_plugged_pbd(rig):
    sim, s, target, files = rig
    x = s.xenapi
    sr, pbd = introduce(x, target)
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    vdi = x.SR.get_VDIs(sr)[0]
    dom0 = next(v for v in x.VM.get_all() if x.VM.get_is_control_domain(v))
    vbd = x.VBD.create({"VM": dom0, "VDI": vdi, "userdevice": "autodetect", "bootable": False,
                        "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VBD.plug(vbd)
    with pytest.raises(XenAPI.Failure) as e:
        x.PBD.unplug(pbd)
    assert e.value.details == ["VDI_IN_USE", vdi]
    with pytest.raises(XenAPI.Failure) as e:
        x.SR.forget(sr)
    assert e.value.details == ["SR_HAS_PBD", sr]
    with pytest.raises(XenAPI.Failure) as e:
        x.PBD.destroy(pbd)
    assert e.value.details == ["OPERATION_NOT_ALLOWED", "PBD is currently attached"]
    x.VBD.unplug(vbd)
    x.VBD.destroy(vbd)
    x.PBD.unplug(pbd)
    x.SR.forget(sr)  # the PBD and the VDI records go with it; the LUNs stay on the target
    assert sr not in x.SR.get_all() and pbd not in x.PBD.get_all() and vdi not in x.VDI.get_all()
    assert all(f.exists() for f in files)


def test_a_grown_lun_is_a_bigger_vdi_after_a_rescan_and_resize_is_not_offered(rig):
    sim, s, target, _ = rig
    x = s.xenapi
    sr = plugged(x, target)
    vdi = next(v for v in x.SR.get_VDIs(sr) if x.VDI.get_sm_config(v)["LUNid"] == "2")
    with pytest.raises(XenAPI.Failure) as e:
        x.VDI.resize(vdi, str(48 * MIB))
    assert e.value.details == ["SR_OPERATION_NOT_SUPPORTED", sr]
    target.grow_lun(IQN, 2, 48 * MIB)
    x.SR.scan(sr)
    assert int(x.VDI.get_virtual_size(vdi)) == 48 * MIB


def test_vdi_introduce_finds_the_lun_by_lunid(rig):
    sim, s, target, _ = rig
    x = s.xenapi
    sr, pbd = introduce(x, target)
    x.PBD.plug(pbd)

    def intro(lun: str) -> str:
        return x.VDI.introduce("", "vol-2", "a volume", sr, "user", False, False, {}, "", {},
                               {"LUNid": lun}, False, "0", "0", "OpaqueRef:NULL", False,
                               "19700101T00:00:00Z", "OpaqueRef:NULL")
    vdi = intro("2")
    rec = x.VDI.get_record(vdi)
    assert rec["name_label"] == "vol-2" and int(rec["virtual_size"]) == 32 * MIB
    assert rec["sm_config"]["LUNid"] == "2" and rec["SR"] == sr
    with pytest.raises(XenAPI.Failure) as e:
        intro("9")
    assert e.value.details[0] == "SR_BACKEND_FAILURE_46"


def test_a_lun_vdi_cannot_be_storage_migrated(rig):
    """RawISCSISR offers neither VDI_SNAPSHOT nor VDI_MIRROR, so xapi's
    assert_sr_support_operations refuses to move its VDIs (xapi_vm_migrate.ml)."""
    sim, s, target, _ = rig
    x = s.xenapi
    sr = plugged(x, target)
    vdi = x.SR.get_VDIs(sr)[0]
    host = x.host.get_all()[0]
    vm = diskless_vm(x, "with-a-lun")
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": False, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    local = next(r for r in x.SR.get_all() if x.SR.get_type(r) == "ext")
    dest = x.host.migrate_receive(host, x.PIF.get_network(x.host.get_PIFs(host)[0]), {})
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_can_migrate(vm, dest, True, {vdi: local}, {}, {}, {})
    assert e.value.details == ["SR_DOES_NOT_SUPPORT_MIGRATION", sr, "VDI_SNAPSHOT;VDI_MIRROR"]
    x.VM.assert_can_migrate(vm, dest, True, {vdi: sr}, {}, {}, {})  # staying put is fine
