"""The glance_vhd plugin's own tar reader gives what the standard tarfile reads.

The plugin reads uncompressed image tarballs without tarfile's stream mode
(which copied every byte through its buffers three more times); headers are
still tarfile's.  Each format tarfile writes must come out the same, and what
the plugin refuses must still be refused.  The plugin runs end to end in
tests/test_glance_vhd.py.
"""
from __future__ import annotations

import importlib
import io
import os
import tarfile

import pytest

from nova_xenapi.dom0 import PLUGIN_DIR

DOM0LIB = os.path.join(os.path.dirname(__import__("xapisim").__file__), "dom0lib")


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(DOM0LIB)  # XenAPIPlugin, as a dom0 has it
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    return importlib.import_module("glance_vhd")


def _tar(fmt: int, members: list[tuple[str, bytes]], pax: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _read_all(plugin, raw: bytes) -> list[tuple[str, bytes]]:
    body = io.BytesIO(raw)
    out = []
    for info in plugin._tar_members(body):
        data = io.BytesIO()
        plugin._copy_member(body, info.size, data)
        out.append((info.name, data.getvalue()))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_match_tarfile(plugin, fmt):
    sizes = (0, 1, 511, 512, 513, 3 * 1024 * 1024 + 7)
    members = [(f"{i}.vhd", os.urandom(n)) for i, n in enumerate(sizes)]
    if fmt != tarfile.USTAR_FORMAT:
        members.append(("long-" + "x" * 150 + ".vhd", b"long name"))  # GNU longname / pax path
    raw = _tar(fmt, members, {"comment": "caf\u00e9"} if fmt == tarfile.PAX_FORMAT else None)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        want = [(m.name, tar.extractfile(m).read()) for m in tar]
    assert _read_all(plugin, raw) == want == members


def test_a_pax_size_beyond_ustar_is_honoured(plugin):
    # tarfile writes a pax "size" record for members of 8 GiB and more; a small one stands in
    header = tarfile.TarInfo("0.vhd")
    header.size = 5
    header.pax_headers = {"size": "5"}
    raw = header.tobuf(tarfile.PAX_FORMAT) + b"hello".ljust(512, b"\0") + b"\0" * 1024
    assert _read_all(plugin, raw) == [("0.vhd", b"hello")]


TRUNCATED = _tar(tarfile.USTAR_FORMAT, [("0.vhd", b"x" * 2000)])[:1200]


@pytest.mark.parametrize("raw", [b"\x01" * 10000, b"", TRUNCATED], ids=["garbage", "empty", "truncated"])
def test_broken_tars_raise_what_the_plugin_turns_into_image_not_a_tar(plugin, raw):
    with pytest.raises((tarfile.TarError, EOFError)):
        _read_all(plugin, raw)


def test_special_members_are_yielded_for_the_plugin_to_refuse(plugin):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("0.vhd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    (info,) = plugin._tar_members(io.BytesIO(buf.getvalue()))
    assert not info.isreg()
    sparse = tarfile.TarInfo("0.vhd")
    sparse.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    raw = sparse.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024
    assert next(plugin._tar_members(io.BytesIO(raw))).type == tarfile.GNUTYPE_SPARSE


def test_the_upload_tar_reads_back_with_tarfile_and_the_plugins_reader(plugin, tmp_path):
    datas = [os.urandom(n) for n in (3 * 1024 * 1024 + 5, 512, 0)]
    files = []
    for i, d in enumerate(datas):
        path = tmp_path / f"vdi-{i}.vhd"
        path.write_bytes(d)
        files.append(str(path))
    out = io.BytesIO()
    plugin._send_tar(out, files)
    raw = out.getvalue()
    assert len(raw) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == \
            [(f"{i}.vhd", d) for i, d in enumerate(datas)]
    assert _read_all(plugin, raw) == [(f"{i}.vhd", d) for i, d in enumerate(datas)]
