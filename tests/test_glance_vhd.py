"""The glance_vhd dom0 plugin against a real Glance API: VHD chains in and out of a file SR."""
from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path

import pytest
import XenAPI

from nova_xenapi.testing import vhd_images
from tests.conftest import local_sr
from xapisim.vhd import DynamicVhd
from xapisim.vhd import check as vhd_check

MIB = 1 << 20
SIZE = 8 * MIB
# base, middle, leaf: whole blocks, a partial sector run across a block boundary, an overwrite
LAYERS = [{0: b"\x11" * (4 * MIB), 6 * MIB: b"base-tail" * 1000},
          {2 * MIB - 700: b"\x22" * 1500, 5 * MIB: b"\x33" * 4096},
          {0: b"leaf" * 256, 6 * MIB + 17: b"\x44" * 9}]


def _failure(fn, *args, **kwargs) -> list[str]:
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args, **kwargs)
    return e.value.details


def _setup(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    sr = local_sr(x, host)
    return sim, x, host, sr, sim.backend.disks.sr_dir(x.SR.get_uuid(sr))


def _image(glance_api, tmp_path, layers=LAYERS, **tar_args) -> str:
    paths = vhd_images.chain(tmp_path / "chain", SIZE, layers)
    image_id = vhd_images.create_image(glance_api.url)
    vhd_images.upload(glance_api.url, image_id, vhd_images.tarball(paths, **tar_args))
    return image_id


def _download(x, host, sr, glance_api, image_id, n=3, extra=None) -> dict:
    args = {"image_id": image_id, "endpoint": glance_api.url, "token": "any-token",
            "sr_uuid": x.SR.get_uuid(sr), "uuids": ",".join(str(uuidlib.uuid4()) for _ in range(n))}
    args.update(extra or {})
    return json.loads(x.host.call_plugin(host, "glance_vhd.py", "download_vhd", args))


@pytest.mark.parametrize("compress", [False, True])
def test_download_puts_a_checked_chain_into_the_sr(plugged, glance_api, tmp_path, compress):
    sim, x, host, sr, sr_dir = _setup(plugged)
    image_id = _image(glance_api, tmp_path, compress=compress)
    result = _download(x, host, sr, glance_api, image_id, n=4)
    assert len(result["vdis"]) == 3 and result["root"]["uuid"] == result["vdis"][0]
    assert not [p for p in sr_dir.iterdir() if p.name.startswith(".nova-staging")]
    # in the SR: the leaf over its hidden parents, each linked to the next by name
    links = []
    for uuid in result["vdis"]:
        with DynamicVhd(str(sr_dir / f"{uuid}.vhd")) as vhd:
            links.append((vhd.hidden, Path(vhd.parent.path).stem if vhd.parent else None))
    assert links == [(False, result["vdis"][1]), (True, result["vdis"][2]), (True, None)]
    assert vhd_check(str(sr_dir / f"{result['root']['uuid']}.vhd"), parents=True) == []
    # the scan introduces the leaf; the SR's garbage collector then folds the base copies,
    # each with a single child, into it
    x.SR.scan(sr)
    leaf = x.VDI.get_by_uuid(result["root"]["uuid"])
    assert x.VDI.get_managed(leaf) and x.VDI.get_sm_config(leaf) == {}
    gone = {result["vdis"][1], result["vdis"][2]}
    assert not gone & {p.stem for p in sr_dir.glob("*.vhd")}
    assert not gone & {x.VDI.get_uuid(v) for v in x.SR.get_VDIs(sr)}
    assert sim.backend.disks.read_all(x.SR.get_uuid(sr), "ext", result["root"]["uuid"]) == \
        vhd_images.expected(SIZE, LAYERS)


@pytest.mark.parametrize("level", ["", "6"])
def test_upload_sends_the_chain_and_it_round_trips(plugged, glance_api, tmp_path, level):
    sim, x, host, sr, sr_dir = _setup(plugged)
    first = _download(x, host, sr, glance_api, _image(glance_api, tmp_path))
    target = vhd_images.create_image(glance_api.url, name="snapshot")
    out = json.loads(x.host.call_plugin(host, "glance_vhd.py", "upload_vhd", {
        "image_id": target, "endpoint": glance_api.url, "token": "t", "compression_level": level,
        "sr_uuid": x.SR.get_uuid(sr), "vdi_uuids": ",".join(first["vdis"])}))
    assert vhd_images.image(glance_api.url, target)["status"] == "active"
    stored = vhd_images.data(glance_api.url, target)
    assert (stored[:2] == b"\x1f\x8b") == bool(level)  # gzip with image_compression_level
    members = vhd_images.members(stored)
    assert sorted(members) == ["0.vhd", "1.vhd", "2.vhd"] and out["bytes"] > 0
    again = _download(x, host, sr, glance_api, target)
    assert sim.backend.disks.read_all(x.SR.get_uuid(sr), "ext", again["root"]["uuid"]) == \
        vhd_images.expected(SIZE, LAYERS)


def test_upload_refuses_a_chain_that_is_not_one(plugged, glance_api, tmp_path):
    sim, x, host, sr, sr_dir = _setup(plugged)
    got = _download(x, host, sr, glance_api, _image(glance_api, tmp_path))
    target = vhd_images.create_image(glance_api.url)
    details = _failure(x.host.call_plugin, host, "glance_vhd.py", "upload_vhd", {
        "image_id": target, "endpoint": glance_api.url, "sr_uuid": x.SR.get_uuid(sr),
        "vdi_uuids": ",".join([got["vdis"][0], got["vdis"][2]])})
    assert details[0] == "IMAGE_BAD_CHAIN"
    assert vhd_images.image(glance_api.url, target)["status"] == "queued"


HOSTILE = [("image_id", "../../etc/passwd"), ("endpoint", "file:///etc/passwd"),
           ("endpoint", "http://127.0.0.1:80/x?session=1"), ("endpoint", "http://:80"),
           ("endpoint", "http://127.0.0.1:99999"), ("endpoint", "http://h/\r\nX-Evil: 1"),
           ("token", "s3cr3t\r\nX-Evil: 1"), ("sr_uuid", "../../../etc"),
           ("uuids", "not-a-uuid"), ("uuids", ""), ("uuids", ",".join([str(uuidlib.UUID(int=1))] * 2)),
           ("uuids", ",".join(str(uuidlib.uuid4()) for _ in range(31)))]


@pytest.mark.parametrize("key,value", HOSTILE)
def test_download_refuses_hostile_arguments(plugged, glance_api, key, value):
    sim, x, host, sr, sr_dir = _setup(plugged)
    before = sorted(sr_dir.iterdir())
    details = _failure(_download, x, host, sr, glance_api, str(uuidlib.uuid4()), extra={key: value})
    assert details[:2] == ["INVALID_ARGUMENT", key]
    assert "s3cr3t" not in " ".join(details)  # the token never comes back in an error
    assert sorted(sr_dir.iterdir()) == before


def _bad_tar(tmp_path, kind) -> bytes:
    paths = vhd_images.chain(tmp_path / "bad", SIZE, LAYERS[:2])
    if kind == "traversal":
        return vhd_images.tarball(paths, names=["0.vhd", "../1.vhd"])
    if kind == "gap":
        return vhd_images.tarball(paths, names=["0.vhd", "2.vhd"])
    if kind == "not-a-tar":
        return b"\x01" * 10000
    if kind == "symlink":
        import io
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("0.vhd")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
        return buf.getvalue()
    if kind == "parent-outside":  # the leaf alone: its parent locator names a file elsewhere
        return vhd_images.tarball(paths[:1])
    if kind == "loop":  # the base made a child of the leaf: each the parent of the other
        from xapisim import vhd
        looped = paths[1].with_name("looped.vhd")
        vhd.create_child(str(looped), str(paths[0]), SIZE)
        looped.replace(paths[1])  # the leaf's parent, layer1.vhd, is now the leaf's child
    if kind == "hidden-leaf":
        from xapisim import vhd
        vhd.set_hidden(str(paths[0]), True)
    if kind == "corrupt":
        data = bytearray(paths[1].read_bytes())
        data[-512 + 40] ^= 0xFF  # the trailing footer's original size: its checksum no longer holds
        paths[1].write_bytes(bytes(data))
    return vhd_images.tarball(paths)


@pytest.mark.parametrize("kind,code", [("traversal", "IMAGE_BAD_MEMBER"), ("gap", "IMAGE_BAD_CHAIN"),
                                       ("not-a-tar", "IMAGE_NOT_A_TAR"),
                                       ("symlink", "IMAGE_BAD_MEMBER"),
                                       ("hidden-leaf", "IMAGE_BAD_CHAIN"),
                                       ("parent-outside", "IMAGE_BAD_CHAIN"),
                                       ("loop", "IMAGE_BAD_CHAIN"),
                                       ("corrupt", "IMAGE_INVALID_VHD")])
def test_bad_images_leave_the_sr_as_it_was(plugged, glance_api, tmp_path, kind, code):
    sim, x, host, sr, sr_dir = _setup(plugged)
    image_id = vhd_images.create_image(glance_api.url)
    vhd_images.upload(glance_api.url, image_id, _bad_tar(tmp_path, kind))
    before = sorted(sr_dir.iterdir())
    assert _failure(_download, x, host, sr, glance_api, image_id)[0] == code
    assert sorted(sr_dir.iterdir()) == before


def test_more_vhds_than_uuids_is_refused(plugged, glance_api, tmp_path):
    sim, x, host, sr, sr_dir = _setup(plugged)
    before = sorted(sr_dir.iterdir())
    assert _failure(_download, x, host, sr, glance_api, _image(glance_api, tmp_path), 2)[0] == \
        "IMAGE_BAD_CHAIN"
    assert sorted(sr_dir.iterdir()) == before


def test_missing_image_and_unreachable_glance(plugged, glance_api):
    sim, x, host, sr, sr_dir = _setup(plugged)
    assert _failure(_download, x, host, sr, glance_api, str(uuidlib.uuid4()))[0] == \
        "GLANCE_IMAGE_NOT_FOUND"
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert _failure(_download, x, host, sr, glance_api, str(uuidlib.uuid4()),
                    extra={"endpoint": closed})[0] == "GLANCE_UNREACHABLE"


def test_https_checks_the_certificate(plugged, tmp_path, monkeypatch):
    from nova_xenapi.testing.glance_server import GlanceServer
    from xapisim.tls import certificate_pem, ensure_certificate
    sim, x, host, sr, sr_dir = _setup(plugged)
    pem = ensure_certificate(tmp_path / "glance.pem", ["127.0.0.1"], "glance")
    ca = tmp_path / "ca.pem"
    ca.write_text(certificate_pem(pem))
    import ssl
    trusted = ssl.create_default_context(cafile=str(ca))
    with GlanceServer(tmp_path / "glance-tls", tls=(str(pem), str(pem))) as server:
        paths = vhd_images.chain(tmp_path / "chain", SIZE, LAYERS)
        image_id = vhd_images.create_image(server.url, trusted)
        vhd_images.upload(server.url, image_id, vhd_images.tarball(paths), trusted)
        details = _failure(_download, x, host, sr, server, image_id)
        assert details[0] == "GLANCE_UNREACHABLE" and "CERTIFICATE_VERIFY_FAILED" in " ".join(details)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the dom0's trust store, as an operator sets it
        got = _download(x, host, sr, server, image_id)
    assert sim.backend.disks.read_all(x.SR.get_uuid(sr), "ext", got["root"]["uuid"]) == \
        vhd_images.expected(SIZE, LAYERS)


def test_a_gzip_bomb_is_refused_before_it_fills_the_sr(plugged, glance_api, tmp_path):
    """A member far longer than a VHD of its own virtual size can be: 8 MiB of disk, then
    256 MiB of zeros that gzip makes about 1 MiB of. Refused at its header, not after."""
    import gzip
    import io
    import tarfile
    sim, x, host, sr, sr_dir = _setup(plugged)
    (vhd,) = vhd_images.chain(tmp_path / "bomb", SIZE, LAYERS[:1])
    head = vhd.read_bytes()[:512]  # the footer copy: virtual size 8 MiB
    size = 256 * MIB
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("0.vhd")
        info.size = size
        tar.addfile(info, _Bomb(head, size))
    assert len(raw.getvalue()) < 2 * MIB
    image_id = vhd_images.create_image(glance_api.url)
    vhd_images.upload(glance_api.url, image_id, raw.getvalue())
    before = sorted(sr_dir.iterdir())
    details = _failure(_download, x, host, sr, glance_api, image_id)
    assert details[0] == "IMAGE_INVALID_VHD" and "larger than a VHD" in details[-1], details
    assert sorted(sr_dir.iterdir()) == before


class _Bomb:
    """``head``, then zeros, ``size`` bytes in all, read without holding them."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.left = head, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data, self.head = self.head[:n], self.head[n:]
        data += b"\0" * (n - len(data))
        self.left -= n
        return data


def test_a_vhd_larger_than_the_flavor_is_refused_before_it_is_written(plugged, glance_api,
                                                                       tmp_path):
    sim, x, host, sr, sr_dir = _setup(plugged)
    before = sorted(sr_dir.iterdir())
    details = _failure(_download, x, host, sr, glance_api, _image(glance_api, tmp_path),
                       extra={"max_virtual_size": str(SIZE - MIB)})
    assert details[:2] == ["IMAGE_TOO_LARGE", details[1]] and details[2:] == [str(SIZE), str(SIZE - MIB)]
    assert sorted(sr_dir.iterdir()) == before
