"""xapisim raw VDI import/export throughput next to a plain copy of the same bytes on loopback.

For each SR type (``ext``: VHD files, ``lvm``: raw volumes) and image size
(64 MiB and 1 GiB by default) a fresh ``xapisim serve`` runs in its own
process; the client streams a raw image of non-zero bytes with
``PUT /import_raw_vdi`` (Content-Length, 1 MiB writes) and reads it back with
``GET /export_raw_vdi``, checking the bytes.  The plain copy is the same file
sent over a loopback TCP connection to a reader that writes it to a file on
the same disk: what any transfer that stores the bytes costs at least.  Memory
is the simulator process's peak RSS (VmHWM), to show it stays flat with the
image size.  Each figure is the best of three runs (the page cache's
writeback makes single runs noisy).  Target: at least 70% of the plain copy.

Run: ``.venv/bin/python benchmarks/vdi_transfer.py [MiB ...]``
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time

import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from loopback import make_image, plain_copy, xapisim_process  # noqa: E402

MIB = 1 << 20
CHUNK = MIB
PASSWORD = "bench"
REPEATS = 3


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _import(x, port: int, session: str, vdi: str, image: str, mib: int) -> float:
    task = x.xenapi.task.create("bench import", "")
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.putrequest("PUT", f"/import_raw_vdi?session_id={session}&vdi={vdi}&format=raw&task_id={task}")
    conn.putheader("Content-Length", str(mib * MIB))
    conn.endheaders()
    with open(image, "rb") as f:
        while chunk := f.read(CHUNK):
            conn.send(chunk)
    conn.getresponse().read()
    while x.xenapi.task.get_status(task) == "pending":
        time.sleep(0.002)
    took = time.perf_counter() - start
    if x.xenapi.task.get_status(task) != "success":
        raise RuntimeError(f"import failed: {x.xenapi.task.get_error_info(task)}")
    x.xenapi.task.destroy(task)
    conn.close()
    return took


def _export(port: int, session: str, vdi: str, digest: str | None) -> float:
    """Seconds to read the VDI back; with a digest, check the bytes (then the time is not used)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.request("GET", f"/export_raw_vdi?session_id={session}&vdi={vdi}&format=raw")
    resp = conn.getresponse()
    got = hashlib.sha256()
    buf = bytearray(CHUNK)
    while n := resp.readinto(buf):
        if digest:
            got.update(memoryview(buf)[:n])
    took = time.perf_counter() - start
    conn.close()
    if digest and got.hexdigest() != digest:
        raise RuntimeError("exported bytes differ from the imported image")
    return took


def run_one(sr_type: str, mib: int, image: str, digest: str, tmp: str) -> tuple[float, float, float]:
    with xapisim_process(tmp, sr_type, PASSWORD) as (port, proc):
        x = XenAPI.Session(f"http://127.0.0.1:{port}")
        x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
        sr = x.xenapi.pool.get_default_SR(x.xenapi.pool.get_all()[0])
        vdi = x.xenapi.VDI.create({"name_label": "bench", "SR": sr, "virtual_size": str(mib * MIB),
                                   "type": "user", "sharable": False, "read_only": False,
                                   "other_config": {}})
        session = x._session
        imported = exported = float("inf")
        for _ in range(REPEATS):  # best of a few: the page cache's writeback makes single runs noisy
            os.sync()
            imported = min(imported, _import(x, port, session, vdi, image, mib))
            _export(port, session, vdi, digest)  # the bytes round-trip exactly
            exported = min(exported, _export(port, session, vdi, None))
        return imported, exported, peak_rss_mib(proc.pid)


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-vdi-") as tmp:
        print("raw VDI transfer through xapisim's HTTP handlers vs a plain loopback copy to a file")
        print(f"{'SR':>4} {'size':>7} {'plain MiB/s':>12} {'import MiB/s':>13} {'ratio':>6} "
              f"{'export MiB/s':>13} {'ratio':>6} {'sim peak RSS MiB':>17}")
        for mib in sizes:
            image = os.path.join(tmp, f"img-{mib}.raw")
            digest = make_image(image, mib * MIB)
            for sr_type in ("ext", "lvm"):
                plain = float("inf")
                for _ in range(REPEATS):
                    os.sync()  # no dirty pages left from the previous measurement
                    plain = min(plain, plain_copy(image, os.path.join(tmp, "copy.raw")))
                imp, exp, rss = run_one(sr_type, mib, image, digest, tmp)
                print(f"{sr_type:>4} {mib:>5}Mi {mib / plain:>12.0f} {mib / imp:>13.0f} {plain / imp:>6.2f} "
                      f"{mib / exp:>13.0f} {plain / exp:>6.2f} {rss:>17.0f}")
            os.unlink(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
