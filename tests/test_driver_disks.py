"""The driver's disk transfers against xapisim: sparse imports send only data, and bytes round-trip."""
from __future__ import annotations

import time

import pytest

from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
from tests.conftest import PASSWORD

MIB = 1 << 20


def test_sparse_import_sends_only_data_and_round_trips(sim, tmp_path):
    s = XenAPISession(sim.url, "root", PASSWORD)
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(64 * MIB)
        f.seek(3 * MIB)
        f.write(b"A" * 4096)
        f.seek(40 * MIB)
        f.write(b"B" * 8192)
    extents = list(disks.data_extents(str(path)))
    assert sum(n for _, n in extents) < MIB  # the file system keeps the holes
    sr = disks.find_sr(s, "default-sr:true")
    vdi = disks.create_vdi(s, sr, "u", "swap", "sparse", 64 * MIB)
    sent = disks.import_sparse(s, vdi, str(path), 60)
    assert sent == sum(n for _, n in extents)
    with disks.exporter(s, vdi, "raw") as r:
        assert r.read() == path.read_bytes()
    assert s.call_xenapi("task.get_all") == []
    disks.destroy_vdi(s, vdi)


def test_an_import_that_does_not_fit_fails_with_xapis_error_and_leaves_no_task(sim, tmp_path):
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr = disks.find_sr(s, "default-sr:true")
    vdi = disks.create_vdi(s, sr, "u", "root", "small", MIB)
    path = tmp_path / "big.raw"
    size = disks.virtual_size(s, vdi)  # the SR may round the size up
    path.write_bytes(b"x" * (size + MIB))
    with pytest.raises(XenAPIError) as e:
        disks.import_file(s, vdi, str(path), "raw", 60)
    assert e.value.code == "VDI_IO_ERROR"
    assert s.call_xenapi("task.get_all") == []
    disks.destroy_vdi(s, vdi)


def test_a_streamed_import_sends_every_byte_even_from_a_reused_buffer(sim):
    """A buffer the caller refills at once does not change what was sent."""
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr = disks.find_sr(s, "default-sr:true")
    vdi = disks.create_vdi(s, sr, "u", "swap", "streamed", 8 * MIB)
    buf = bytearray(MIB)
    with disks.importer(s, vdi, "raw", 8 * MIB, 60) as writer:
        for n in range(8):
            buf[:] = bytes([n + 1]) * MIB
            writer.write(buf)
    with disks.exporter(s, vdi, "raw") as r:
        assert r.read() == b"".join(bytes([n + 1]) * MIB for n in range(8))
    disks.destroy_vdi(s, vdi)


def test_a_failed_streamed_import_raises_and_leaves_no_task(sim):
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr = disks.find_sr(s, "default-sr:true")
    vdi = disks.create_vdi(s, sr, "u", "swap", "too-big", 2 * MIB)
    tasks_before = set(s.call_xenapi("task.get_all"))
    with pytest.raises(XenAPIError):
        with disks.importer(s, vdi, "raw", 3 * MIB, 60) as writer:
            for _ in range(3):
                writer.write(b"x" * MIB)
    with pytest.raises(ValueError):
        with disks.importer(s, vdi, "raw", MIB, 60) as writer:
            writer.write(b"y" * 4096)
            raise ValueError("the image service failed")
    # the host ends the second import's task once it sees the connection closed; the
    # driver's destroy, asked while it was pending, takes effect then
    deadline = time.monotonic() + 10
    while (left := set(s.call_xenapi("task.get_all")) - tasks_before) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, [s.call_xenapi("task.get_status", t) for t in left]
    disks.destroy_vdi(s, vdi)
