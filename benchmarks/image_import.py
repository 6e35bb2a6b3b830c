"""Image import throughput per image handler, and where the time goes.

For each image size (64 MiB and 1 GiB by default) the script writes a raw image
of non-zero bytes, stores it in a real Glance API (its own process, file
store; raw for the streaming handlers, a tar of one dynamic VHD for
``direct_vhd``), and measures, in the same run:

the rig, each component alone on the same bytes:

* plain copy: the bytes over a loopback TCP connection to a reader that
  discards them, in 1 MiB chunks (the ceiling for anything here);
* Glance download: ``curl`` fetching the image from Glance into /dev/null;
* xapisim raw import: ``curl`` PUTting the raw file into a new VDI through
  ``/import_raw_vdi`` (ext SR: xapisim writes a VHD file, as a host does);
* xapisim guest device: a plain copy into a VDI plugged into the compute VM,
  and the unplug that writes it back into the VHD (a real host has no such
  write-back: the guest's writes go through blkback);

the product, each handler as nova-compute runs it (Nova's own Glance client):

* vdi_remote_stream: Glance → this process → ``PUT /import_raw_vdi``;
* vdi_local_dev: Glance → this process → the VDI's block device (the VDI is
  plugged into a running VM standing for the compute VM; the device is the
  file xapisim shows for it, written back into the VHD at unplug);
* direct_vhd: dom0's ``glance_vhd`` plugin downloads the tarball from Glance
  straight into the SR, then the driver scans it.

and the integrity checks each path has to make, on one core: the SHA-512 that
Nova's Glance client verifies in nova-compute for the streaming handlers, and
the Content-MD5 that the glance_vhd plugin checks in dom0 for direct_vhd.

Each product line shows MiB/s, the ratio to the slowest component on its path
(the plain copy for all; Glance download, the SHA-512 and xapisim's import,
or its guest device, for the streaming handlers; Glance
download and the MD5 for direct_vhd), the CPU seconds per GiB spent in
this process (nova-compute's side) and in xapisim (with its dom0 plugins and
tools, which it waits for), the peak Python heap during the import
(tracemalloc) and this process's peak RSS: memory stays flat whatever the size.

Run: ``.venv/bin/python benchmarks/image_import.py [MiB ...]``
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

import XenAPI  # noqa: E402
from nova import conf as nova_conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402

from nova_xenapi import this_vm  # noqa: E402
from nova_xenapi.dom0 import PLUGIN_DIR  # noqa: E402
from nova_xenapi.session import XenAPISession  # noqa: E402
from nova_xenapi.storage import disks, images  # noqa: E402
from nova_xenapi.storage.direct_vhd import DirectVhdHandler  # noqa: E402
from nova_xenapi.testing import vhd_images  # noqa: E402
from nova_xenapi.testing.glance_server import GlanceServer  # noqa: E402
from nova_xenapi.testing.xapi_objects import diskless_vm  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from loopback import free_port, make_image, plain_copy  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
PASSWORD = "bench"
RUNS = 2


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
    x.xenapi.session.logout()


def cpu_of(pid: int) -> float:
    """CPU seconds of a process and the children it has waited for (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


class Measure:
    """Wall time, CPU of this process and of xapisim, peak heap, over one run."""

    def __init__(self, sim_pid: int) -> None:
        self.sim_pid = sim_pid

    def __enter__(self) -> Measure:
        tracemalloc.start()
        self.cpu0, self.sim0 = own_cpu(), cpu_of(self.sim_pid)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = own_cpu() - self.cpu0
        self.sim_cpu = cpu_of(self.sim_pid) - self.sim0
        self.heap = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def best(runs: list[Measure]) -> Measure:
    return min(runs, key=lambda m: m.seconds)


def rig(glance_url: str, raw_id: str, tar_id: str, sim_url: str, sr: str, path: str,
        mib: int) -> dict[str, float]:
    """MiB/s of each rig component alone (best of RUNS)."""
    out = {"plain copy": mib / min(plain_copy(path) for _ in range(RUNS))}
    for name, image_id in (("Glance download", raw_id), ("Glance download (tar)", tar_id)):
        out[name] = mib / min(timed(["curl", "-sSf", "-o", "/dev/null",
                                     f"{glance_url}/v2/images/{image_id}/file"])
                              for _ in range(RUNS))
    x = XenAPI.Session(sim_url)
    x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench-rig")
    seconds = []
    for _ in range(RUNS):
        vdi = x.xenapi.VDI.create({
            "name_label": "bench-rig", "name_description": "", "SR": sr,
            "virtual_size": str(mib * MIB), "type": "user", "sharable": False, "read_only": False,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})
        url = f"{sim_url}/import_raw_vdi?session_id={x._session}&vdi={vdi}&format=raw"
        seconds.append(timed(["curl", "-sSf", "-H", "Expect:", "-T", path, url]))
        x.xenapi.VDI.destroy(vdi)
    x.xenapi.session.logout()
    out["xapisim raw import"] = mib / min(seconds)
    out.update(hashing(path, mib))
    return out


def device_rig(session: XenAPISession, sr: str, path: str, mib: int) -> float:
    """MiB/s of a plain copy into a VDI plugged into the compute VM, with the unplug that
    writes it back into the VHD: what xapisim itself costs the vdi_local_dev path (a real
    host has no write-back, the guest writes through blkback)."""
    vm = session.call_xenapi("VM.get_by_uuid", this_vm.own_uuid())
    seconds = []
    for _ in range(RUNS):
        vdi = session.call_xenapi("VDI.create", {
            "name_label": "bench-rig", "name_description": "", "SR": sr,
            "virtual_size": str(mib * MIB), "type": "user", "sharable": False, "read_only": False,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})
        start = time.perf_counter()
        with disks.plugged(session, vm, vdi) as device:
            with open(path, "rb") as src, open(this_vm.device_path(device), "r+b") as dst:
                shutil.copyfileobj(src, dst, MIB)
        seconds.append(time.perf_counter() - start)
        disks.destroy_vdi(session, vdi)
    return mib / min(seconds)


def hashing(path: str, mib: int) -> dict[str, float]:
    """MiB/s of the integrity checks each path must make, on one core: Nova's Glance client
    verifies the image's SHA-512 (os_hash_value) in nova-compute as it streams it, and the
    glance_vhd plugin checks Glance's Content-MD5 in dom0."""
    out = {}
    for name, algorithm in (("SHA-512 (Nova's check)", "sha512"), ("MD5 (dom0 plugin's)", "md5")):
        h = hashlib.new(algorithm)
        start = time.perf_counter()
        with open(path, "rb") as f:
            while chunk := f.read(MIB):
                h.update(chunk)
        out[name] = mib / (time.perf_counter() - start)
    return out


def product(handler, ctx, session: XenAPISession, sr: str, meta, mib: int,
            sim_pid: int) -> tuple[Measure, str]:
    """The best of RUNS imports, and the VDI of the last one (for the upload)."""
    runs, vdi = [], None
    for _ in range(RUNS):
        if vdi is not None:
            disks.destroy_vdi(session, vdi)
        with Measure(sim_pid) as m:
            vdi, _ = handler.fetch(ctx, session, meta, sr, mib * MIB, f"bench-{mib}", {})
        runs.append(m)
    return best(runs), vdi


def snapshot_upload(handler, ctx, session: XenAPISession, glance_url: str, vdi: str,
                    sim_pid: int) -> Measure:
    """The best of RUNS uploads of ``vdi`` as a new image, as a snapshot sends its disk."""
    runs = []
    for _ in range(RUNS):
        image_id = vhd_images.create_image(glance_url, name="bench-snapshot")
        with Measure(sim_pid) as m:
            handler.upload(ctx, session, image_id, vdi, {"name": "bench-snapshot"})
        delete_image(glance_url, image_id)
        runs.append(m)
    return best(runs)


def delete_image(glance_url: str, image_id: str) -> None:
    req = urllib.request.Request(f"{glance_url}/v2/images/{image_id}", method="DELETE")
    urllib.request.urlopen(req, timeout=60).close()


def upload_rig(glance_url: str, sim_url: str, vdi: str, vhd: str, mib: int) -> dict[str, float]:
    """MiB/s of image data for the upload's rig components alone: curl PUTting the VHD into
    Glance (which hashes what it stores), and curl taking the VDI out of xapisim as a VHD."""
    up = []
    for _ in range(RUNS):
        image_id = vhd_images.create_image(glance_url, name="bench-rig")
        up.append(timed(["curl", "-sSf", "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                         "-T", vhd, f"{glance_url}/v2/images/{image_id}/file"]))
        delete_image(glance_url, image_id)
    x = XenAPI.Session(sim_url)
    x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench-rig")
    url = f"{sim_url}/export_raw_vdi?session_id={x._session}&vdi={vdi}&format=vhd"
    down = min(timed(["curl", "-sSf", "-o", "/dev/null", url]) for _ in range(RUNS))
    x.xenapi.session.logout()
    return {"Glance upload": mib / min(up), "xapisim VHD export": mib / down}


def glance_images(glance_url: str, raw: str, tmp: str) -> tuple[str, str, int, str]:
    """The raw image, and a tar of one dynamic VHD of it, in Glance: (raw id, tar id, tar size,
    the VHD's path)."""
    raw_id = vhd_images.create_image(glance_url, disk_format="raw", container_format="bare",
                                     name="bench-raw")
    with open(raw, "rb") as f:
        vhd_images.upload(glance_url, raw_id, f)
    vhd = os.path.join(tmp, "image.vhd")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", raw, vhd], check=True)
    tar = os.path.join(tmp, "image.tar")
    with open(tar, "wb") as f:
        vhd_images.tarball([vhd], out=f)
    tar_id = vhd_images.create_image(glance_url, name="bench-vhd")
    with open(tar, "rb") as f:
        vhd_images.upload(glance_url, tar_id, f)
    size = os.path.getsize(tar)
    os.unlink(tar)
    return raw_id, tar_id, size, vhd


# the rig components a snapshot upload passes through, by handler
UPLOAD_PATHS = {"vdi_remote_stream": ("plain copy", "Glance upload", "xapisim VHD export"),
                "vdi_local_dev": ("plain copy", "Glance upload", "xapisim guest device"),
                "direct_vhd": ("plain copy", "Glance upload", "MD5 (dom0 plugin's)")}


def report(name: str, m: Measure, path_parts, parts: dict[str, float], mib: int) -> None:
    bound = min(path_parts, key=parts.get)
    rate = mib / m.seconds
    per_gib = GIB / (mib * MIB)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {name:<18} {rate:7.0f} {bound:>22} {rate / parts[bound]:6.2f} "
          f"{m.cpu * per_gib:15.2f} {m.sim_cpu * per_gib:8.2f} {m.heap / MIB:9.1f} {rss:8.0f}")


def main() -> int:
    objects.register_all()
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp, \
            GlanceServer(os.path.join(tmp, "glance")) as glance_api:
        nova_conf.CONF.set_override("api_servers", [glance_api.url], "glance")
        ctx = nova_context.RequestContext("bench-user", "bench-project", auth_token="bench-token",
                                         is_admin=True)
        port = free_port()
        devices = os.path.join(tmp, "devices")
        sim = start_sim(os.path.join(tmp, "state"), port, devices)
        sim_url = f"http://127.0.0.1:{port}"
        try:
            session = XenAPISession(sim_url, "root", PASSWORD)
            sr = disks.find_sr(session, "default-sr:true")
            compute_vm(session, tmp, devices)
            print(f"image import: a raw image of non-zero bytes in Glance ({glance_api.server}), "
                  f"xapisim (ext SR) in its own process; best of {RUNS} runs each")
            for mib in sizes:
                path = os.path.join(tmp, f"img-{mib}.raw")
                make_image(path, mib * MIB)
                raw_id, tar_id, tar_size, vhd = glance_images(glance_api.url, path, tmp)
                parts = rig(glance_api.url, raw_id, tar_id, sim_url, sr, path, mib)
                parts["xapisim guest device"] = device_rig(session, sr, path, mib)
                print(f"\n{mib} MiB. The rig, each component alone (MiB/s):")
                for name, rate in parts.items():
                    print(f"  {name:<24} {rate:7.0f}")
                print(f"  {'handler':<18} {'MiB/s':>7} {'bound by':>22} {'ratio':>6} "
                      f"{'CPU s/GiB ours':>15} {'xapisim':>8} {'heap MiB':>9} {'RSS MiB':>8}")
                raw_meta = objects.ImageMeta.from_dict({"id": raw_id, "disk_format": "raw",
                                                        "container_format": "bare",
                                                        "size": mib * MIB, "properties": {}})
                tar_meta = objects.ImageMeta.from_dict({"id": tar_id, "disk_format": "vhd",
                                                        "container_format": "ovf",
                                                        "size": tar_size, "properties": {}})
                uploads: list = []
                for handler, meta, path_parts in (
                        (images.RemoteStreamHandler(), raw_meta,
                         ("plain copy", "Glance download", "xapisim raw import",
                          "SHA-512 (Nova's check)")),
                        (images.LocalDevHandler(), raw_meta,
                         ("plain copy", "Glance download", "xapisim guest device",
                          "SHA-512 (Nova's check)")),
                        (DirectVhdHandler(), tar_meta,
                         ("plain copy", "Glance download (tar)", "MD5 (dom0 plugin's)"))):
                    m, vdi = product(handler, ctx, session, sr, meta, mib, sim.pid)
                    report(handler.name, m, path_parts, parts, mib)
                    if not uploads:
                        parts.update(upload_rig(glance_api.url, sim_url, vdi, vhd, mib))
                    uploads.append((handler, vdi))
                print("  snapshot upload of the imported disk:")
                for handler, vdi in uploads:
                    m = snapshot_upload(handler, ctx, session, glance_api.url, vdi, sim.pid)
                    report(handler.name, m, UPLOAD_PATHS[handler.name], parts, mib)
                    disks.destroy_vdi(session, vdi)
                for name in ("Glance upload", "xapisim VHD export"):
                    print(f"    ({name} alone: {parts[name]:.0f} MiB/s)")
                os.unlink(path)
                os.unlink(vhd)
            session.close()
        finally:
            sim.terminate()
            sim.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
