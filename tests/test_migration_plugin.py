"""The migration.py dom0 plugin: a VHD chain from one host's SR to another's over SFTP.

Two standalone hosts (two pools), each with the plugins, SSH into their dom0s
and the root trust a migration needs: the destination dom0's key in the
source's authorized_keys and the source's host key in its known_hosts.  The
destination's plugin runs the real OpenSSH ``sftp`` client.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid as uuidlib

import pytest
import XenAPI

from nova_xenapi.dom0 import PLUGIN_DIR
from nova_xenapi.testing import dom0_trust, vhd_images
from tests.conftest import PASSWORD, local_sr, login
from xapisim import SimConfig, Simulator, host_configs
from xapisim.backend import HostConfig
from xapisim.vhd import DynamicVhd, set_hidden, set_parent

MIB = 1 << 20
SIZE = 8 * MIB
LAYERS = [{0: b"\x11" * (3 * MIB)}, {MIB: b"\x22" * 4096, 5 * MIB: b"\x33" * MIB}]
SRC, DST = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def hosts(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       plugin_dirs=[str(PLUGIN_DIR)],
                       other_pools=[[HostConfig(DST, "xs-host-2", 8192, 4)]])
    with Simulator(config, tmp_path / "state", ssh_port=0) as sim:
        sides = {}
        for address in (SRC, DST):
            x = login(sim.url_of(address)).xenapi
            host = x.host.get_all()[0]
            sr = local_sr(x, host)
            root = sim.dom0_of(address)
            sr_dir = root / "var/run/sr-mount" / x.SR.get_uuid(sr)
            dom0_trust.link_images(root, sr_dir)
            sides[address] = (x, host, sr, sr_dir, root)
        yield sim, sides


def _source_chain(sim, sides, tmp_path) -> list[str]:
    """A two-VHD chain (leaf, base) in the source SR, as SR.scan and a clone leave it."""
    x, host, sr, sr_dir, _ = sides[SRC]
    paths = vhd_images.chain(tmp_path / "chain", SIZE, LAYERS)
    uuids = [str(uuidlib.uuid4()) for _ in paths]
    for path, uuid in zip(paths, uuids, strict=True):
        shutil.copy(path, sr_dir / f"{uuid}.vhd")
    set_parent(str(sr_dir / f"{uuids[0]}.vhd"), str(sr_dir / f"{uuids[1]}.vhd"))
    set_hidden(str(sr_dir / f"{uuids[1]}.vhd"), True)
    return uuids


def _call(sides, address, fn, args):
    x, host = sides[address][:2]
    return x.host.call_plugin(host, "migration.py", fn, args)


def _failure(sides, address, fn, args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as e:
        _call(sides, address, fn, args)
    return e.value.details


def _receive_args(sim, sides, instance, count=2, **extra):
    args = {"instance_uuid": instance, "disk": "root", "source_host": SRC, "source_port": str(sim.ssh_port),
            "count": str(count), "sr_uuid": sides[DST][0].SR.get_uuid(sides[DST][2]),
            "uuids": ",".join(str(uuidlib.uuid4()) for _ in range(count))}
    args.update(extra)
    return args


def test_a_chain_moves_between_dom0s_and_the_staged_copy_goes(hosts, tmp_path):
    sim, sides = hosts
    dom0_trust.trust(sim, SRC, DST)
    chain = _source_chain(sim, sides, tmp_path)
    instance = str(uuidlib.uuid4())
    x, _, sr, src_dir, src_root = sides[SRC]
    staged = json.loads(_call(sides, SRC, "stage_vhds", {
        "instance_uuid": instance, "disk": "root", "sr_uuid": x.SR.get_uuid(sr),
        "vdi_uuids": ",".join(chain)}))
    assert staged["count"] == 2
    staged_dir = src_root / "images" / f"instance{instance}"
    assert sorted(p.name for p in (staged_dir / "root").iterdir()) == ["0.vhd", "1.vhd"]
    assert os.path.samefile(staged_dir / "root/0.vhd", src_dir / f"{chain[0]}.vhd")  # a hard link

    args = _receive_args(sim, sides, instance)
    got = json.loads(_call(sides, DST, "receive_vhds", args))
    new = args["uuids"].split(",")
    assert got == {"root": {"uuid": new[0]}, "vdis": new}
    dx, _, dsr, dst_dir, _ = sides[DST]
    with DynamicVhd(str(dst_dir / f"{new[0]}.vhd")) as leaf:
        assert os.path.basename(leaf.parent.path) == f"{new[1]}.vhd" and leaf.parent.hidden
    assert not [p for p in dst_dir.iterdir() if p.name.startswith(".nova-staging")]
    dx.SR.scan(dsr)
    assert sim.backends[1].disks.read_all(dx.SR.get_uuid(dsr), "ext", new[0]) == \
        vhd_images.expected(SIZE, LAYERS)

    assert _call(sides, SRC, "remove_staged", {"instance_uuid": instance}) == "removed"
    assert not staged_dir.exists() and (src_dir / f"{chain[0]}.vhd").exists()
    assert _call(sides, SRC, "remove_staged", {"instance_uuid": instance}) == "absent"


def test_without_root_trust_the_transfer_fails_and_leaves_nothing(hosts, tmp_path):
    sim, sides = hosts
    dom0_trust.trust(sim, SRC, DST)
    (sides[SRC][4] / "root/.ssh/authorized_keys").write_text("")  # the source does not trust it
    chain = _source_chain(sim, sides, tmp_path)
    instance = str(uuidlib.uuid4())
    x, _, sr = sides[SRC][:3]
    _call(sides, SRC, "stage_vhds", {"instance_uuid": instance, "disk": "root",
                                      "sr_uuid": x.SR.get_uuid(sr),
                                      "vdi_uuids": ",".join(chain)})
    dst_dir = sides[DST][3]
    before = sorted(p.name for p in dst_dir.iterdir())
    details = _failure(sides, DST, "receive_vhds", _receive_args(sim, sides, instance))
    assert details[0] == "MIGRATION_TRANSFER_FAILED" and details[2] == SRC
    assert "Permission denied" in details[3]
    assert sorted(p.name for p in dst_dir.iterdir()) == before


def test_an_unknown_source_host_key_is_refused(hosts, tmp_path):
    sim, sides = hosts
    dom0_trust.trust(sim, SRC, DST)
    (sides[DST][4] / "root/.ssh/known_hosts").write_text("")
    instance = str(uuidlib.uuid4())
    x, _, sr = sides[SRC][:3]
    _call(sides, SRC, "stage_vhds", {"instance_uuid": instance, "disk": "root",
                                      "sr_uuid": x.SR.get_uuid(sr),
                                      "vdi_uuids": ",".join(_source_chain(sim, sides, tmp_path))})
    details = _failure(sides, DST, "receive_vhds", _receive_args(sim, sides, instance))
    assert details[0] == "MIGRATION_TRANSFER_FAILED" and "Host key verification failed" in details[3]


def test_a_broken_chain_is_not_staged(hosts, tmp_path):
    sim, sides = hosts
    chain = _source_chain(sim, sides, tmp_path)
    x, _, sr, _, root = sides[SRC]
    instance = str(uuidlib.uuid4())
    details = _failure(sides, SRC, "stage_vhds", {
        "instance_uuid": instance, "disk": "root", "sr_uuid": x.SR.get_uuid(sr),
        "vdi_uuids": ",".join(reversed(chain))})
    assert details[0] == "MIGRATION_BAD_CHAIN"
    assert not (root / "images" / f"instance{instance}").exists()


@pytest.mark.parametrize("fn,bad", [
    ("receive_vhds", {"source_host": "-oProxyCommand=touch /tmp/x"}),
    ("receive_vhds", {"source_host": "a b"}),
    ("receive_vhds", {"source_host": "host;reboot"}),
    ("receive_vhds", {"source_host": "../../etc"}),
    ("receive_vhds", {"source_port": "0"}),
    ("receive_vhds", {"source_port": "22 -v"}),
    ("receive_vhds", {"count": "31"}),
    ("receive_vhds", {"count": "3"}),  # more VHDs than UUIDs
    ("receive_vhds", {"instance_uuid": "../../../etc"}),
    ("receive_vhds", {"sr_uuid": "../x"}),
    ("stage_vhds", {"instance_uuid": "x/../../y"}),
    ("stage_vhds", {"vdi_uuids": "../../etc/passwd"}),
    ("stage_vhds", {"disk": "../root"}),
    ("receive_vhds", {"disk": "root/../../x"}),
    ("remove_staged", {"instance_uuid": "../images"}),
])
def test_hostile_arguments_are_refused(hosts, fn, bad):
    sim, sides = hosts
    instance = str(uuidlib.uuid4())
    x, _, sr = sides[SRC][:3]
    args = {"stage_vhds": {"instance_uuid": instance, "disk": "root", "sr_uuid": x.SR.get_uuid(sr),
                           "vdi_uuids": str(uuidlib.uuid4())},
            "remove_staged": {"instance_uuid": instance},
            "receive_vhds": _receive_args(sim, sides, instance)}[fn]
    args.update(bad)
    address = DST if fn == "receive_vhds" else SRC
    details = _failure(sides, address, fn, args)
    assert details[0] == "INVALID_ARGUMENT" and details[1] in bad, details
