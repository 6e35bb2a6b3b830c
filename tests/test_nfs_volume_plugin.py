"""The nfs_volume.py dom0 plugin, run by xapisim on an introduced NFS SR over an export."""
from __future__ import annotations

import os
import uuid

import pytest
import XenAPI

from nova_xenapi.dom0 import PLUGIN_DIR
from tests.conftest import PASSWORD, login
from xapisim import SimConfig, Simulator, host_configs

MIB = 1 << 20


@pytest.fixture
def export_sr(tmp_path):
    """(sim, xenapi, host, export dir, the export's SR uuid), the SR plugged with nosubdir."""
    export = tmp_path / "export"
    export.mkdir()
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       plugin_dirs=[str(PLUGIN_DIR)],
                       nfs_exports={"198.51.100.7:/cinder": str(export)})
    with Simulator(config, tmp_path / "state") as sim:
        x = login(sim.url).xenapi
        host = x.host.get_all()[0]
        sr = x.SR.introduce("", "volumes", "", "nfs", "", True, {"nosubdir": "true"})
        pbd = x.PBD.create({"host": host, "SR": sr, "other_config": {},
                            "device_config": {"server": "198.51.100.7", "serverpath": "/cinder"}})
        x.PBD.plug(pbd)
        yield sim, x, host, export, x.SR.get_uuid(sr)


def _call(x, host, fn, **args):
    return x.host.call_plugin(host, "nfs_volume.py", fn, args)


def _fails(x, host, fn, **args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as e:
        _call(x, host, fn, **args)
    return e.value.details


def test_a_volume_file_becomes_a_vdi_and_its_second_name_goes_again(export_sr):
    sim, x, host, export, sr_uuid = export_sr
    volume = export / "volume-0d3c"
    with open(volume, "wb") as f:
        f.truncate(2 * MIB)
    vdi_uuid = str(uuid.uuid4())
    args = {"sr_uuid": sr_uuid, "name": volume.name, "vdi_uuid": vdi_uuid}
    assert _call(x, host, "link_volume", **args) == f"{vdi_uuid}.raw"
    assert _call(x, host, "link_volume", **args) == f"{vdi_uuid}.raw"  # again: the same link
    assert os.stat(export / f"{vdi_uuid}.raw").st_ino == os.stat(volume).st_ino
    sr = x.SR.get_by_uuid(sr_uuid)
    x.SR.scan(sr)
    vdi = x.VDI.get_by_uuid(vdi_uuid)
    assert x.VDI.get_virtual_size(vdi) == str(2 * MIB)
    assert _call(x, host, "unlink_volume", **args) == f"{vdi_uuid}.raw"
    assert _call(x, host, "unlink_volume", **args) == ""  # gone already
    assert volume.exists() and not (export / f"{vdi_uuid}.raw").exists()


def test_the_only_name_of_the_data_is_never_removed(export_sr):
    sim, x, host, export, sr_uuid = export_sr
    volume = export / "volume-1"
    volume.write_bytes(b"data")
    vdi_uuid = str(uuid.uuid4())
    args = {"sr_uuid": sr_uuid, "name": volume.name, "vdi_uuid": vdi_uuid}
    _call(x, host, "link_volume", **args)
    volume.unlink()  # the volume's own name went some other way
    assert _fails(x, host, "unlink_volume", **args) == ["VOLUME_FILE_MISSING", "volume-1"]
    assert (export / f"{vdi_uuid}.raw").read_bytes() == b"data"


@pytest.mark.parametrize("over, error", [
    ({"name": "../../../etc/passwd"}, "INVALID_ARGUMENT"),
    ({"name": ".hidden"}, "INVALID_ARGUMENT"),
    ({"name": "volume-1; rm -rf /"}, "INVALID_ARGUMENT"),
    ({"name": "3f1a.vhd"}, "INVALID_ARGUMENT"),
    ({"name": "no-such-volume"}, "VOLUME_FILE_MISSING"),
    ({"name": "a-link"}, "VOLUME_FILE_NOT_REGULAR"),
    ({"name": "a-directory"}, "VOLUME_FILE_NOT_REGULAR"),
    ({"vdi_uuid": "../x"}, "INVALID_ARGUMENT"),
    ({"vdi_uuid": "NOT-A-UUID"}, "INVALID_ARGUMENT"),
    ({"sr_uuid": "../../../../tmp"}, "INVALID_ARGUMENT"),
    ({"sr_uuid": str(uuid.UUID(int=1))}, "SR_NOT_MOUNTED"),
])
def test_hostile_or_wrong_arguments_are_refused_and_touch_nothing(export_sr, over, error):
    sim, x, host, export, sr_uuid = export_sr
    (export / "volume-1").write_bytes(b"data")
    (export / "a-link").symlink_to("/etc/passwd")
    (export / "a-directory").mkdir()
    before = sorted(p.name for p in export.iterdir())
    args = {"sr_uuid": sr_uuid, "name": "volume-1", "vdi_uuid": str(uuid.uuid4()), **over}
    assert _fails(x, host, "link_volume", **args)[0] == error
    if error in ("INVALID_ARGUMENT", "SR_NOT_MOUNTED"):
        assert _fails(x, host, "unlink_volume", **args)[0] == error
    else:
        assert _call(x, host, "unlink_volume", **args) == ""  # nothing was linked
    assert sorted(p.name for p in export.iterdir()) == before
