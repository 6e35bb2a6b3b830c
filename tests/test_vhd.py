"""xapisim's in-place dynamic VHD writer/reader, checked against qemu-img as the independent reader."""
from __future__ import annotations

import os
import subprocess

import pytest

from xapisim.vhd import DynamicVhd, VhdError

MIB = 1 << 20


def _vhd(path, size):
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
                    str(path), str(size)], check=True)


def test_unaligned_writes_and_zero_blocks_read_back_and_pass_qemu_img(tmp_path):
    vhd, raw = tmp_path / "d.vhd", tmp_path / "d.raw"
    _vhd(vhd, 16 * MIB)
    expect = bytearray(16 * MIB)
    writes = [(0, b"\x01" * 100), (2 * MIB - 7, b"\x02" * 20), (5 * MIB, bytes(2 * MIB)),
              (9 * MIB + 3, os.urandom(3 * MIB)), (16 * MIB - 512, b"\x03" * 512)]
    with DynamicVhd(str(vhd), writable=True) as d:
        for offset, data in writes:
            d.write_at(offset, data)
            expect[offset:offset + len(data)] = data
        with pytest.raises(VhdError):
            d.write_at(16 * MIB - 1, b"xx")
    with DynamicVhd(str(vhd)) as d:
        assert b"".join(d.blocks()) == bytes(expect)
        assert d.bat[2] == 0xFFFFFFFF, "an all-zero write allocated no block"
    raw.write_bytes(bytes(expect))
    subprocess.run(["qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", str(vhd), str(raw)],
                   check=True)


def test_blocks_qemu_wrote_are_read_with_their_bitmaps(tmp_path):
    src, vhd = tmp_path / "src.raw", tmp_path / "q.vhd"
    data = os.urandom(3 * MIB + 4096)
    src.write_bytes(data)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", str(src), str(vhd)], check=True)
    with DynamicVhd(str(vhd)) as d:
        assert b"".join(d.blocks())[:len(data)] == data


def test_not_a_vhd_is_refused(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\0" * 4096)
    with pytest.raises(VhdError):
        DynamicVhd(str(p))
