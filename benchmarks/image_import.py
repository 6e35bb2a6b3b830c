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

* vdi_local_dev: the VDI is plugged into a running VM standing for the
  compute VM, and the handler writes the image through the device file
  xapisim shows for it (``--guest-device-dir``); the unplug writes the data
  into the VHD.

* direct_vhd: the image is a tar of one dynamic VHD holding the same bytes,
  in a real Glance API process (file store); the driver asks the simulated
  dom0's glance_vhd plugin to download it into the SR, then scans the SR.
  Its plain copy is the same tarball over loopback.

It prints MiB/s of image data for each, the ratio to the plain copy, and the
driver process's peak Python heap during the import (tracemalloc) and its
peak RSS, to show memory stays flat whatever the image size (with
direct_vhd the bytes never enter the driver's process at all).

Run: ``.venv/bin/python benchmarks/image_import.py [MiB ...]``
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

import XenAPI  # noqa: E402
from nova import conf as nova_conf  # noqa: E402
from nova import objects  # noqa: E402

from nova_xenapi import this_vm  # noqa: E402
from nova_xenapi.dom0 import PLUGIN_DIR  # noqa: E402
from nova_xenapi.session import XenAPISession  # noqa: E402
from nova_xenapi.storage import disks, images
from nova_xenapi.storage.direct_vhd import DirectVhdHandler  # noqa: E402
from nova_xenapi.testing import vhd_images  # noqa: E402
from nova_xenapi.testing.glance_server import GlanceServer  # noqa: E402
from nova_xenapi.testing.xapi_objects import diskless_vm  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from loopback import free_port, make_image, plain_copy  # noqa: E402

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





def start_sim(state: str, port: int, devices: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "xapisim", "serve", "--port", str(port),
                             "--password", PASSWORD, "--state-dir", state, "--auth-failure-delay", "0",
                             "--sr-size-gib", "64", "--guest-device-dir", devices,
                             "--plugins", str(PLUGIN_DIR)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    if "master at" not in line:
        proc.kill()
        raise RuntimeError(f"xapisim did not start: {line!r}")
    return proc



def compute_vm(session: XenAPISession, tmp: str, devices: str) -> None:
    """A running VM standing for the compute VM; this process takes it for its own."""
    x = XenAPI.Session(session.url)
    x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
    vm = diskless_vm(x.xenapi, "nova-compute")
    x.xenapi.VM.start(vm, False, False)
    uuid = x.xenapi.VM.get_uuid(vm)
    path = os.path.join(tmp, "hypervisor-uuid")
    with open(path, "w") as f:
        f.write(uuid)
    this_vm.HYPERVISOR_UUID = path
    this_vm.DEVICE_DIR = os.path.join(devices, uuid)


class TokenContext:
    auth_token = "bench-token"
    global_id = "req-bench"


def timed_import(handler, session: XenAPISession, sr: str, meta, mib: int) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    vdi, _ = handler.fetch(TokenContext(), session, meta, sr, mib * MIB, f"bench-{mib}", {})
    took = time.perf_counter() - start
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    disks.destroy_vdi(session, vdi)
    return took, heap_peak


def _direct_vhd(glance_api, session: XenAPISession, sr: str, raw: str, tmp: str,
                mib: int) -> tuple[float, float]:
    """Best of 2 direct_vhd imports of ``raw`` as a one-VHD tarball; (seconds, peak heap)."""
    vhd = os.path.join(tmp, "image.vhd")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", raw, vhd], check=True)
    tar = os.path.join(tmp, "image.tar")
    with open(tar, "wb") as f:
        vhd_images.tarball([vhd], out=f)
    os.unlink(vhd)
    image_id = vhd_images.create_image(glance_api.url)
    with open(tar, "rb") as f:
        vhd_images.upload(glance_api.url, image_id, f)
    meta = objects.ImageMeta.from_dict({"id": image_id, "disk_format": "vhd",
                                        "container_format": "ovf", "size": os.path.getsize(tar),
                                        "properties": {}})
    os.unlink(tar)
    runs = [timed_import(DirectVhdHandler(), session, sr, meta, mib) for _ in range(2)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> int:
    objects.register_all()
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp, \
            GlanceServer(os.path.join(tmp, "glance")) as glance_api:
        nova_conf.CONF.set_override("api_servers", [glance_api.url], "glance")
        port = free_port()
        devices = os.path.join(tmp, "devices")
        sim = start_sim(os.path.join(tmp, "state"), port, devices)
        try:
            session = XenAPISession(f"http://127.0.0.1:{port}", "root", PASSWORD)
            sr = disks.find_sr(session, "default-sr:true")
            compute_vm(session, tmp, devices)
            print("image import, raw image of non-zero bytes, xapisim (ext SR) in its own process,")
            print("best of 2 runs each")
            print(f"{'size':>8} {'handler':>18} {'MiB/s':>7} {'plain MiB/s':>12} {'ratio':>6} "
                  f"{'peak heap MiB':>14} {'peak RSS MiB':>13}")
            for mib in sizes:
                path = os.path.join(tmp, f"img-{mib}.raw")
                make_image(path, mib * MIB)
                plain = min(plain_copy(path) for _ in range(2))
                meta = objects.ImageMeta.from_dict({"id": "img", "disk_format": "raw",
                                                    "size": mib * MIB, "properties": {}})
                store = FileImages({"img": path})
                for handler in (images.RemoteStreamHandler(store), images.LocalDevHandler(store)):
                    runs = [timed_import(handler, session, sr, meta, mib) for _ in range(2)]
                    took = min(r[0] for r in runs)
                    heap = max(r[1] for r in runs)
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"{mib:>6}Mi {handler.name:>18} {mib / took:>7.0f} {mib / plain:>12.0f} "
                          f"{plain / took:>6.2f} {heap / MIB:>14.1f} {rss:>13.0f}")
                took, heap = _direct_vhd(glance_api, session, sr, path, tmp, mib)
                print(f"{mib:>6}Mi {'direct_vhd':>18} {mib / took:>7.0f} {mib / plain:>12.0f} "
                      f"{plain / took:>6.2f} {heap / MIB:>14.1f} "
                      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>13.0f}")
                os.unlink(path)
            session.close()
        finally:
            sim.terminate()
            sim.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
