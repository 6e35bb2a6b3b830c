"""The partition.py dom0 plugin: growing a root partition and its ext4 filesystem in place.

Each disk is a VDI on the simulated host's ext SR, plugged into dom0 as xapi
would plug it; the result is read back out of the VDI and checked with
tools that do not share the plugin's code (partx, e2fsck, debugfs).
"""
from __future__ import annotations

import os
import struct

import pytest
import XenAPI

from nova_xenapi.testing import disk_images
from tests.conftest import local_sr

MIB = 1 << 20
IMAGE = 48 * MIB
DISK = 96 * MIB
FILES = {"hello.txt": b"hello from the image\n", "blob": os.urandom(3 * MIB)}


def _vdi_with(sim, x, image, size=DISK):
    host = x.host.get_all()[0]
    sr = local_sr(x, host)
    vdi = x.VDI.create({"name_label": "root", "SR": sr, "virtual_size": str(size), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {}})
    sim.backend.disks.import_image(image, "raw", x.SR.get_uuid(sr), "ext", x.VDI.get_uuid(vdi), size)
    return host, vdi


def _grow(x, host, vdi):
    """Plug into dom0, run the plugin, unplug: (result or Failure details)."""
    dom0 = x.host.get_control_domain(host)
    dev = x.VM.get_allowed_VBD_devices(dom0)[0]
    vbd = x.VBD.create({"VM": dom0, "VDI": vdi, "userdevice": dev, "bootable": False, "mode": "RW",
                        "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VBD.plug(vbd)
    try:
        return x.host.call_plugin(host, "partition.py", "grow_root", {"dev": x.VBD.get_device(vbd)})
    except XenAPI.Failure as exc:
        return exc.details
    finally:
        x.VBD.unplug(vbd)
        x.VBD.destroy(vbd)


def _disk(sim, x, vdi, tmp_path):
    out = tmp_path / "after.raw"
    sr_uuid = x.SR.get_uuid(x.VDI.get_SR(vdi))
    out.write_bytes(sim.backend.disks.read_all(sr_uuid, "ext", x.VDI.get_uuid(vdi)))
    return out


@pytest.mark.parametrize("table", ["mbr", "gpt"])
def test_the_only_partition_and_its_filesystem_grow_to_the_end_of_the_disk(plugged, tmp_path, table):
    sim, x = plugged
    image = disk_images.partitioned(tmp_path / "image.raw", IMAGE, 32 * MIB, table=table, files=FILES)
    host, vdi = _vdi_with(sim, x, image)
    result = _grow(x, host, vdi)
    assert result.startswith("resized ")
    disk = _disk(sim, x, vdi, tmp_path)
    assert disk.stat().st_size == DISK
    (part,) = disk_images.partitions(disk)  # partx also checks both GPT headers' checksums
    assert part["start"] == disk_images.START and DISK // 512 - 2 * 2048 < part["end"] < DISK // 512
    code, report = disk_images.fs_check(disk)
    assert code == 0, report
    assert disk_images.fs_size(disk) == int(result.split()[1]) == part["sectors"] * 512
    for name, data in FILES.items():
        assert disk_images.read_file(disk, name) == data
    if table == "gpt":  # the backup header sits in the disk's last sector again
        assert disk.read_bytes()[-512:][:8] == b"EFI PART"
    assert not x.VM.get_VBDs(x.host.get_control_domain(host))
    assert _grow(x, host, vdi).startswith("unchanged ")  # a second run changes nothing
    assert _disk(sim, x, vdi, tmp_path).read_bytes() == disk.read_bytes()


def _bad_superblock(path):
    """A partition whose superblock has the ext magic and nothing else e2fsck can use."""
    disk_images.partitioned(path, IMAGE, 32 * MIB, fs="")
    with open(path, "r+b") as f:
        f.seek(disk_images.START * 512 + 1024 + 56)
        f.write(struct.pack("<H", 0xEF53))


LAYOUTS = {
    "two partitions": (lambda p: disk_images.partitioned(p, IMAGE, 16 * MIB, count=2),
                       "exactly one partition"),
    "no table": (lambda p: disk_images.partitioned(p, IMAGE, IMAGE, table="none", fs=""),
                 "no partition table"),
    "not ext": (lambda p: disk_images.partitioned(p, IMAGE, 32 * MIB, fs=""), "ext2/3/4"),
    "gpt, empty": (lambda p: disk_images.partitioned(p, IMAGE, 32 * MIB, table="gpt", count=0,
                                                     fs=""), "exactly one partition"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_layout_it_cannot_grow_is_refused_and_left_as_it_was(plugged, tmp_path, layout):
    sim, x = plugged
    make, reason = LAYOUTS[layout]
    image = tmp_path / "image.raw"
    make(image)
    host, vdi = _vdi_with(sim, x, image)
    before = _disk(sim, x, vdi, tmp_path).read_bytes()
    details = _grow(x, host, vdi)
    assert details[0] == "CANNOT_RESIZE_DISK" and reason in details[1], details
    assert _disk(sim, x, vdi, tmp_path).read_bytes() == before


def test_a_filesystem_e2fsck_cannot_repair_is_refused_before_the_table_changes(plugged, tmp_path):
    sim, x = plugged
    image = tmp_path / "image.raw"
    _bad_superblock(image)
    host, vdi = _vdi_with(sim, x, image)
    before = _disk(sim, x, vdi, tmp_path)
    (part_before,) = disk_images.partitions(before)
    details = _grow(x, host, vdi)
    assert details[0] == "FILESYSTEM_CHECK_FAILED" and int(details[2]) >= 4, details
    assert disk_images.partitions(_disk(sim, x, vdi, tmp_path)) == [part_before]


@pytest.mark.parametrize("dev", ["../../etc/passwd", "xvdb1", "xvdb; reboot", "", "xvdb\n",
                                 "/dev/xvdb", "sda/../xvdb", "XVDB", "loop0"])
def test_hostile_device_names_are_refused(plugged, dev):
    sim, x = plugged
    host = x.host.get_all()[0]
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(host, "partition.py", "grow_root", {"dev": dev})
    assert e.value.details[:2] == ["INVALID_ARGUMENT", "dev"]
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(host, "partition.py", "grow_root", {})
    assert e.value.details == ["MISSING_ARGUMENT", "dev"]
