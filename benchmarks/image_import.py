"""Image import throughput per image handler, next to a plain loopback copy of the same bytes.

For each image size (64 MiB and 1 GiB by default) the script writes a raw image
of non-zero bytes, then:

* plain copy: sends the bytes over a loopback TCP connection to a reader that
  discards them, in the same 1 MiB chunks (the ceiling for any handler);
* vdi_remote_stream: the driver's handler streams the image from an image
  service (reading the file as Glance's client would) into a VDI through
  ``PUT /import_raw_vdi`` of an ``xapisim serve`` running in its own process,
  and waits for the import task.  The SR is ``ext``, so xapisim writes the
  blocks of a VHD file as a host would.

It prints MiB/s for both, their ratio, and the driver process's peak Python
heap during the import (tracemalloc) and its peak RSS, to show memory stays
flat whatever the image size.  direct_vhd and vdi_local_dev are not measured
yet: they need the dom0 plugins that do not exist yet.

Run: ``.venv/bin/python benchmarks/image_import.py [MiB ...]``
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

from nova import objects  # noqa: E402

from nova_xenapi import disks, images  # noqa: E402
from nova_xenapi.session import XenAPISession  # noqa: E402

MIB = 1 << 20
CHUNK = MIB
PASSWORD = "bench"


class FileImages:
    """An image service reading images from files in chunks, as Glance's download does."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def download(self, context, image_id, data=None, dst_path=None, trusted_certs=None):
        with open(self.paths[image_id], "rb") as f:
            while chunk := f.read(CHUNK):
                data.write(chunk)


def make_image(path: str, size: int) -> None:
    block = bytes((i * 7 + 1) % 251 + 1 for i in range(CHUNK))
    with open(path, "wb") as f:
        for _ in range(size // CHUNK):
            f.write(block)


def plain_copy(path: str) -> float:
    """Seconds to push the file through a loopback socket into a discarding reader."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def sink():
        conn, _ = server.accept()
        while conn.recv(CHUNK):
            pass
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    start = time.perf_counter()
    with socket.create_connection(server.getsockname()) as c, open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            c.sendall(chunk)
    t.join()
    server.close()
    return time.perf_counter() - start


def start_sim(state: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "xapisim", "serve", "--port", str(port),
                             "--password", PASSWORD, "--state-dir", state, "--auth-failure-delay", "0",
                             "--sr-size-gib", "64"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    if "master at" not in line:
        proc.kill()
        raise RuntimeError(f"xapisim did not start: {line!r}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    objects.register_all()
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        port = free_port()
        sim = start_sim(os.path.join(tmp, "state"), port)
        try:
            session = XenAPISession(f"http://127.0.0.1:{port}", "root", PASSWORD)
            sr = disks.find_sr(session, "default-sr:true")
            print("image import, raw image of non-zero bytes, xapisim (ext SR) in its own process")
            print(f"{'size':>8} {'plain MiB/s':>12} {'remote_stream MiB/s':>20} {'ratio':>6} "
                  f"{'peak heap MiB':>14} {'peak RSS MiB':>13}")
            for mib in sizes:
                path = os.path.join(tmp, f"img-{mib}.raw")
                make_image(path, mib * MIB)
                plain = plain_copy(path)
                handler = images.RemoteStreamHandler(FileImages({"img": path}))
                meta = objects.ImageMeta.from_dict({"id": "img", "disk_format": "raw",
                                                    "size": mib * MIB, "properties": {}})
                vdi = disks.create_vdi(session, sr, "bench", "root", f"bench-{mib}", mib * MIB)
                tracemalloc.start()
                start = time.perf_counter()
                handler.download(None, session, meta, vdi)
                took = time.perf_counter() - start
                _, heap_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                disks.destroy_vdi(session, vdi)
                os.unlink(path)
                print(f"{mib:>6}Mi {mib / plain:>12.0f} {mib / took:>20.0f} {plain / took:>6.2f} "
                      f"{heap_peak / MIB:>14.1f} {rss:>13.0f}")
            session.close()
        finally:
            sim.terminate()
            sim.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
