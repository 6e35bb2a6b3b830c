"""SR.scan introduces VHD files found in a file SR and forgets VDIs whose files are gone."""
from __future__ import annotations

import subprocess
import sys
import uuid as uuidlib

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
    """A base (hidden, 4 MiB of 0x11) and a leaf over it that rewrote its first MiB with 0x22."""
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    base, leaf = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    raw = sr_dir.parent / "base.raw"
    raw.write_bytes(b"\x11" * (4 * MIB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", str(raw), str(sr_dir / f"{base}.vhd")],
                   check=True)
    _vhd_util("snapshot", "-n", str(sr_dir / f"{leaf}.vhd"), "-p", str(sr_dir / f"{base}.vhd"))
    _vhd_util("set", "-n", str(sr_dir / f"{base}.vhd"), "-f", "hidden", "-v", "1")
    from xapisim.vhd import DynamicVhd
    with DynamicVhd(str(sr_dir / f"{leaf}.vhd"), writable=True) as d:
        d.write_at(0, b"\x22" * MIB)
    return sr_dir, base, leaf


def test_scan_introduces_a_chain_and_reads_through_it(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir, base, leaf = _chain_in_sr(sim, client, sr)
    client("SR.scan", sr)
    leaf_ref, base_ref = client("VDI.get_by_uuid", leaf), client("VDI.get_by_uuid", base)
    assert client("VDI.get_sm_config", leaf_ref) == {"vhd-parent": base}
    assert client("VDI.get_managed", leaf_ref) is True
    assert client("VDI.get_managed", base_ref) is False  # a hidden base copy
    data = sim.backend.disks.read_all(client("SR.get_uuid", sr), "ext", leaf)
    assert data == b"\x22" * MIB + b"\x11" * (3 * MIB)
    # a clone in the same SR shares the parent; the parent goes when its last child does
    clone = client("VDI.clone", leaf_ref, {})
    assert client("VDI.get_sm_config", clone) == {"vhd-parent": base}
    client("VDI.destroy", leaf_ref)
    assert (sr_dir / f"{base}.vhd").exists()
    assert sim.backend.disks.read_all(client("SR.get_uuid", sr), "ext",
                                      client("VDI.get_uuid", clone))[-MIB:] == b"\x11" * MIB
    client("VDI.destroy", clone)
    assert not (sr_dir / f"{base}.vhd").exists()
    assert base not in [client("VDI.get_uuid", v) for v in client("SR.get_VDIs", sr)]


def test_scan_skips_a_leaf_whose_parent_is_missing(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir, base, leaf = _chain_in_sr(sim, client, sr)
    (sr_dir / f"{base}.vhd").rename(sr_dir.parent / "elsewhere.vhd")
    client("SR.scan", sr)
    assert leaf not in [client("VDI.get_uuid", v) for v in client("SR.get_VDIs", sr)]
