"""SR.scan introduces VHD files found in a file SR and forgets VDIs whose files are gone."""
from __future__ import annotations

import subprocess
import sys
import uuid as uuidlib

import pytest
import XenAPI

MIB = 1 << 20


def test_scan_introduces_and_forgets_vhd_files(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    new = str(uuidlib.uuid4())
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
                    str(sr_dir / f"{new}.vhd"), str(8 * MIB)], check=True)
    (sr_dir / "not-a-vdi.txt").write_text("ignored")
    before = set(client("SR.get_VDIs", sr))
    client("SR.scan", sr)
    vdi = client("VDI.get_by_uuid", new)
    assert set(client("SR.get_VDIs", sr)) == before | {vdi}
    assert int(client("VDI.get_virtual_size", vdi)) == 8 * MIB
    assert client("VDI.get_location", vdi) == new
    (sr_dir / f"{new}.vhd").unlink()
    client("SR.scan", sr)
    assert set(client("SR.get_VDIs", sr)) == before


VHD_UTIL = str(__import__("pathlib").Path(__file__).parents[1] / "xapisim/dom0lib/bin/vhd-util")


def _vhd_util(*args: str) -> None:
    subprocess.run([sys.executable, VHD_UTIL, *args], check=True, capture_output=True)


def _chain_in_sr(sim, client, sr):
    """A base (hidden, 4 MiB of 0x11), a leaf over it that rewrote its first MiB with 0x22, and
    a second leaf over it (so the base has two children and is not coalesced)."""
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    base, leaf, sibling = (str(uuidlib.uuid4()) for _ in range(3))
    raw = sr_dir.parent / "base.raw"
    raw.write_bytes(b"\x11" * (4 * MIB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", str(raw), str(sr_dir / f"{base}.vhd")],
                   check=True)
    for child in (leaf, sibling):
        _vhd_util("snapshot", "-n", str(sr_dir / f"{child}.vhd"), "-p", str(sr_dir / f"{base}.vhd"))
    _vhd_util("set", "-n", str(sr_dir / f"{base}.vhd"), "-f", "hidden", "-v", "1")
    from xapisim.vhd import DynamicVhd
    with DynamicVhd(str(sr_dir / f"{leaf}.vhd"), writable=True) as d:
        d.write_at(0, b"\x22" * MIB)
    return sr_dir, base, leaf, sibling


def test_scan_introduces_a_chain_and_reads_through_it(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir, base, leaf, sibling = _chain_in_sr(sim, client, sr)
    client("SR.scan", sr)
    leaf_ref, base_ref = client("VDI.get_by_uuid", leaf), client("VDI.get_by_uuid", base)
    assert client("VDI.get_sm_config", leaf_ref) == {"vhd-parent": base}
    assert client("VDI.get_managed", leaf_ref) is True
    assert client("VDI.get_managed", base_ref) is False  # a hidden base copy
    data = sim.backend.disks.read_all(client("SR.get_uuid", sr), "ext", leaf)
    assert data == b"\x22" * MIB + b"\x11" * (3 * MIB)
    # a clone turns the leaf into a new base copy under both; nothing is copied
    clone = client("VDI.clone", leaf_ref, {})
    middle = client("VDI.get_sm_config", clone)["vhd-parent"]
    assert client("VDI.get_sm_config", leaf_ref) == {"vhd-parent": middle} and middle != base
    middle_ref = client("VDI.get_by_uuid", middle)
    assert client("VDI.get_managed", middle_ref) is False
    assert client("VDI.get_sm_config", middle_ref) == {"vhd-parent": base}
    assert (sr_dir / f"{leaf}.vhd").stat().st_size < MIB  # an empty child
    # when the leaf goes, the middle base copy has one child left and is coalesced into it
    client("VDI.destroy", leaf_ref)
    clone_uuid = client("VDI.get_uuid", clone)
    assert client("VDI.get_sm_config", clone) == {"vhd-parent": base}
    assert not (sr_dir / f"{middle}.vhd").exists()
    assert sim.backend.disks.read_all(client("SR.get_uuid", sr), "ext", clone_uuid) == data
    # and so is the first base copy once the sibling goes
    client("VDI.destroy", client("VDI.get_by_uuid", sibling))
    assert client("VDI.get_sm_config", clone) == {}
    assert sorted(p.name for p in sr_dir.iterdir() if p.suffix == ".vhd") == [f"{clone_uuid}.vhd"]
    assert sim.backend.disks.read_all(client("SR.get_uuid", sr), "ext", clone_uuid) == data
    assert {base, middle} & {client("VDI.get_uuid", v) for v in client("SR.get_VDIs", sr)} == set()
    client("VDI.destroy", clone)


def test_scan_skips_a_leaf_whose_parent_is_missing(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir, base, leaf, _ = _chain_in_sr(sim, client, sr)
    (sr_dir / f"{base}.vhd").rename(sr_dir.parent / "elsewhere.vhd")
    client("SR.scan", sr)
    assert leaf not in [client("VDI.get_uuid", v) for v in client("SR.get_VDIs", sr)]


def _write(sim, client, vdi, offset, data):
    with sim.backend.disks.open_disk(client("SR.get_uuid", client("VDI.get_SR", vdi)), "ext",
                                     client("VDI.get_uuid", vdi), writable=True) as disk:
        disk.write_at(offset, data)


def _read(sim, client, vdi):
    return sim.backend.disks.read_all(client("SR.get_uuid", client("VDI.get_SR", vdi)), "ext",
                                      client("VDI.get_uuid", vdi))


def _new_vdi(client, sr, size=4 * MIB):
    return client("VDI.create", {"name_label": "disk", "SR": sr, "virtual_size": str(size),
                                 "type": "user", "sharable": False, "read_only": False,
                                 "other_config": {}})


def test_a_snapshot_freezes_the_data_and_its_deletion_coalesces_the_chain(sim, client):
    from xapisim import vhd
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    disk = _new_vdi(client, sr)
    _write(sim, client, disk, 0, b"\x01" * (3 * MIB))
    snap = client("VDI.snapshot", disk, {})
    base = client("VDI.get_sm_config", disk)["vhd-parent"]
    assert client("VDI.get_sm_config", snap) == {"vhd-parent": base}
    assert client("VDI.get_is_a_snapshot", snap) and client("VDI.get_snapshot_of", snap) == disk
    _write(sim, client, disk, MIB, b"\x02" * MIB)  # after the snapshot: only the leaf changes
    assert _read(sim, client, snap)[:3 * MIB] == b"\x01" * (3 * MIB)
    expected = b"\x01" * MIB + b"\x02" * MIB + b"\x01" * MIB + bytes(MIB)
    assert _read(sim, client, disk) == expected
    client("VDI.destroy", snap)
    assert client("VDI.get_sm_config", disk) == {}  # the base copy was folded into the leaf
    assert base not in {client("VDI.get_uuid", v) for v in client("SR.get_VDIs", sr)}
    assert not (sr_dir / f"{base}.vhd").exists()
    assert _read(sim, client, disk) == expected
    assert vhd.check(str(sr_dir / f"{client('VDI.get_uuid', disk)}.vhd"), parents=True) == []


def test_leaf_coalesce_false_keeps_the_base_copy_until_it_is_allowed(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    disk = _new_vdi(client, sr)
    _write(sim, client, disk, 0, b"\x05" * MIB)
    client("VDI.add_to_other_config", disk, "leaf-coalesce", "false")
    client("VDI.destroy", client("VDI.snapshot", disk, {}))
    base = client("VDI.get_sm_config", disk)["vhd-parent"]
    client("SR.scan", sr)
    assert client("VDI.get_sm_config", disk) == {"vhd-parent": base}
    client("VDI.remove_from_other_config", disk, "leaf-coalesce")
    client("SR.scan", sr)  # the next collector run coalesces it
    assert client("VDI.get_sm_config", disk) == {}
    assert _read(sim, client, disk)[:MIB] == b"\x05" * MIB


def test_a_clone_of_a_clone_keeps_every_disk_readable_as_the_chain_shrinks(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    first = _new_vdi(client, sr)
    _write(sim, client, first, 0, b"A" * MIB)
    second = client("VDI.clone", first, {})
    _write(sim, client, second, MIB, b"B" * MIB)
    third = client("VDI.clone", second, {})
    _write(sim, client, third, 2 * MIB, b"C" * MIB)
    want = {first: b"A" * MIB + bytes(3 * MIB), second: b"A" * MIB + b"B" * MIB + bytes(2 * MIB),
            third: b"A" * MIB + b"B" * MIB + b"C" * MIB + bytes(MIB)}
    for gone in (second, first):
        client("VDI.destroy", gone)
        del want[gone]
        for vdi, data in want.items():
            assert _read(sim, client, vdi) == data
    assert client("VDI.get_sm_config", third) == {}
    assert [client("VDI.get_managed", v) for v in client("SR.get_VDIs", sr)
            if client("VDI.get_name_label", v) == "base copy"] == []


def test_clones_of_an_unchanged_disk_share_one_base_copy(sim, client):
    """blktap links a snapshot of an empty leaf to the leaf's parent, so a cached image can be
    cloned for every instance without its chain growing (and without hitting the limit of 30)."""
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    image = _new_vdi(client, sr)
    _write(sim, client, image, 0, b"I" * MIB)
    clones = [client("VDI.clone", image, {}) for _ in range(40)]
    base = client("VDI.get_sm_config", image)["vhd-parent"]
    assert {client("VDI.get_sm_config", c)["vhd-parent"] for c in clones} == {base}
    assert client("VDI.get_sm_config", client("VDI.get_by_uuid", base)) == {}
    assert len(list(sr_dir.glob("*.vhd"))) == 42  # the image, its base copy, 40 clones
    assert all(_read(sim, client, c)[:MIB] == b"I" * MIB for c in clones[::13])


def test_a_chain_30_deep_cannot_be_snapshotted_again(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    disk = _new_vdi(client, sr)
    for n in range(29):  # data before each snapshot: every one adds a base copy
        _write(sim, client, disk, 0, bytes([n + 1]) * 512)
        client("VDI.snapshot", disk, {})
    _write(sim, client, disk, 0, b"x" * 512)
    before = set(client("SR.get_VDIs", sr))
    with pytest.raises(XenAPI.Failure) as e:
        client("VDI.snapshot", disk, {})
    assert e.value.details[0] == "SR_BACKEND_FAILURE_109"
    assert set(client("SR.get_VDIs", sr)) == before
