"""Building direct_vhd images for tests and benchmarks: VHD chains, their tarballs, Glance calls.

A direct_vhd image in Glance is a tar of ``0.vhd`` (the leaf) .. ``N.vhd``
(the base), each a parent of the one before, stored with disk_format ``vhd``
and container_format ``ovf`` (Glance only inspects ``bare`` containers), as
the old driver's snapshots were.  ``chain`` makes such VHDs from layers of
writes; ``expected`` says what the guest must see; the Glance helpers speak
its v2 API with the standard library.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path

from xapisim import vhd


def chain(workdir: Path, size: int, layers: list[dict[int, bytes]]) -> list[Path]:
    """VHDs base first in ``layers`` order, each layer's writes in a child of the previous one;
    returned leaf first, as a tarball lists them."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for n, writes in enumerate(layers):
        path = workdir / f"layer{n}.vhd"
        if paths:
            vhd.create_child(str(path), str(paths[-1]))
        else:
            vhd.create_dynamic(str(path), size)
        with vhd.DynamicVhd(str(path), writable=True) as disk:
            for offset, data in writes.items():
                disk.write_at(offset, data)
        paths.append(path)
    for parent in paths[:-1]:
        vhd.set_hidden(str(parent), True)
    return list(reversed(paths))


def expected(size: int, layers: list[dict[int, bytes]]) -> bytes:
    disk = bytearray(size)
    for writes in layers:
        for offset, data in writes.items():
            disk[offset:offset + len(data)] = data
    return bytes(disk)


def tarball(paths: list[Path], compress: bool = False, names: list[str] | None = None,
            out=None) -> bytes | None:
    """The tar of ``paths`` as ``0.vhd`` .. (or ``names``): returned, or written to file ``out``."""
    buf = out or io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tar:
        for n, path in enumerate(paths):
            tar.add(str(path), arcname=names[n] if names else f"{n}.vhd")
    return None if out else buf.getvalue()


def _request(url: str, method: str, body=None, headers: dict | None = None, context=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=60, context=context)


def create_image(glance_url: str, context=None, **meta) -> str:
    meta.setdefault("disk_format", "vhd")
    meta.setdefault("container_format", "ovf")
    meta.setdefault("name", "direct-vhd-test")
    with _request(glance_url + "/v2/images", "POST", json.dumps(meta).encode(),
                  {"Content-Type": "application/json"}, context) as resp:
        return json.load(resp)["id"]


def upload(glance_url: str, image_id: str, data, context=None) -> None:
    """Store ``data`` (bytes, or a file opened for reading) as the image's data."""
    headers = {"Content-Type": "application/octet-stream"}
    if hasattr(data, "read"):
        headers["Content-Length"] = str(os.fstat(data.fileno()).st_size)
    with _request(f"{glance_url}/v2/images/{image_id}/file", "PUT", data, headers, context):
        pass


def image(glance_url: str, image_id: str, context=None) -> dict:
    with _request(f"{glance_url}/v2/images/{image_id}", "GET", context=context) as resp:
        return json.load(resp)


def data(glance_url: str, image_id: str, context=None) -> bytes:
    with _request(f"{glance_url}/v2/images/{image_id}/file", "GET", context=context) as resp:
        return resp.read()


def members(tar_bytes: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def read_chain(path: Path) -> bytes:
    """The guest's view of a VHD (through its parents)."""
    with vhd.DynamicVhd(str(path)) as disk:
        return b"".join(disk.blocks())
