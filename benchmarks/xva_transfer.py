"""xapisim XVA export and import throughput next to a plain loopback copy of the same bytes.

For each disk size (64 MiB and 1 GiB by default) and SR type (``ext``: VHD
files, ``lvm``: raw volumes) a fresh ``xapisim serve`` runs in its own
process with one halted VM whose only disk is full of non-zero bytes (so no
chunk is skipped as zeros).  The client reads ``GET /export`` into a file
(uncompressed, and with ``use_compression=zstd``), then sends that file back
with ``PUT /import`` and waits for the task; the imported disk is read back
and compared.  The plain copy pushes the same XVA file through a loopback
TCP connection into a file on the same disk.  Memory is the simulator's peak
RSS (VmHWM), which should not grow with the disk size.  Best of three runs.

Run: ``.venv/bin/python benchmarks/xva_transfer.py [MiB ...]``
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import xmlrpc.client

import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from loopback import make_image, plain_copy, xapisim_process  # noqa: E402
from vdi_transfer import _import as import_raw  # noqa: E402
from vdi_transfer import peak_rss_mib  # noqa: E402

MIB = 1 << 20
PASSWORD = "bench"
REPEATS = 3


def _wait(x, task: str) -> dict:
    while x.xenapi.task.get_status(task) == "pending":
        time.sleep(0.002)
    rec = x.xenapi.task.get_record(task)
    x.xenapi.task.destroy(task)
    if rec["status"] != "success":
        raise RuntimeError(f"task failed: {rec['error_info']}")
    return rec


def export(port: int, session: str, vm: str, dest: str, query: str = "") -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.request("GET", f"/export?session_id={session}&ref={vm}{query}")
    resp = conn.getresponse()
    buf = bytearray(MIB)
    with open(dest, "wb") as f:
        while n := resp.readinto(buf):
            f.write(memoryview(buf)[:n])
    took = time.perf_counter() - start
    conn.close()
    return took


def import_xva(x, port: int, session: str, path: str) -> tuple[float, str]:
    task = x.xenapi.task.create("bench import", "")
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.putrequest("PUT", f"/import?session_id={session}&task_id={task}")
    conn.putheader("Content-Length", str(os.path.getsize(path)))
    conn.endheaders()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(MIB):
                conn.send(chunk)
        conn.getresponse().read()
    except OSError:
        pass  # the simulator stops reading when the import fails: the task says why
    rec = _wait(x, task)
    took = time.perf_counter() - start
    conn.close()
    wrapped = f"<methodResponse><params><param>{rec['result']}</param></params></methodResponse>"
    (vms,), _ = xmlrpc.client.loads(wrapped)
    return took, vms[0]


def disk_digest(x, port: int, session: str, vm: str) -> str:
    vdi = x.xenapi.VBD.get_VDI(x.xenapi.VM.get_VBDs(vm)[0])
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", f"/export_raw_vdi?session_id={session}&vdi={vdi}")
    resp = conn.getresponse()
    h = hashlib.sha256()
    while data := resp.read(MIB):
        h.update(data)
    conn.close()
    return h.hexdigest()


def destroy_vm(x, vm: str) -> None:
    for vbd in x.xenapi.VM.get_VBDs(vm):
        vdi = x.xenapi.VBD.get_VDI(vbd)
        x.xenapi.VBD.destroy(vbd)
        x.xenapi.VDI.destroy(vdi)
    x.xenapi.VM.destroy(vm)


def run_one(sr_type: str, mib: int, image: str, digest: str, tmp: str) -> dict:
    from nova_xenapi.testing.xapi_objects import diskless_vm
    with xapisim_process(tmp, sr_type, PASSWORD) as (port, proc):
        x = XenAPI.Session(f"http://127.0.0.1:{port}")
        x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
        session = x._session
        sr = x.xenapi.pool.get_default_SR(x.xenapi.pool.get_all()[0])
        vm = diskless_vm(x.xenapi, "bench")
        vdi = x.xenapi.VDI.create({"name_label": "bench", "SR": sr, "virtual_size": str(mib * MIB),
                                   "type": "user", "sharable": False, "read_only": False,
                                   "other_config": {}})
        x.xenapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True,
                             "mode": "RW", "type": "Disk", "unpluggable": False, "empty": False,
                             "other_config": {}, "qos_algorithm_type": "",
                             "qos_algorithm_params": {}})
        import_raw(x, port, session, vdi, image, mib)
        xva = os.path.join(tmp, "export.xva")
        out = {"export": float("inf"), "import": float("inf"), "zstd": float("inf")}
        for _ in range(REPEATS):
            os.sync()
            out["export"] = min(out["export"], export(port, session, vm, xva))
            os.sync()
            took, new = import_xva(x, port, session, xva)
            out["import"] = min(out["import"], took)
            if disk_digest(x, port, session, new) != digest:
                raise RuntimeError("the imported disk differs from the exported one")
            destroy_vm(x, new)
            out["zstd"] = min(out["zstd"], export(port, session, vm, xva + ".zst",
                                                  "&use_compression=zstd"))
        out["xva_bytes"] = os.path.getsize(xva)
        out["rss"] = peak_rss_mib(proc.pid)
        out["xva"] = xva
        return out


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-xva-") as tmp:
        print("XVA export/import through xapisim's HTTP handlers vs a plain loopback copy of the XVA")
        print(f"{'SR':>4} {'disk':>7} {'plain MiB/s':>12} {'export MiB/s':>13} {'ratio':>6} "
              f"{'import MiB/s':>13} {'ratio':>6} {'zstd export MiB/s':>18} {'sim peak RSS MiB':>17}")
        for mib in sizes:
            image = os.path.join(tmp, f"img-{mib}.raw")
            digest = make_image(image, mib * MIB)
            for sr_type in ("ext", "lvm"):
                r = run_one(sr_type, mib, image, digest, tmp)
                plain = float("inf")
                for _ in range(REPEATS):
                    os.sync()
                    plain = min(plain, plain_copy(r["xva"], os.path.join(tmp, "copy.xva")))
                size = r["xva_bytes"] / MIB
                print(f"{sr_type:>4} {mib:>5}Mi {size / plain:>12.0f} {size / r['export']:>13.0f} "
                      f"{plain / r['export']:>6.2f} {size / r['import']:>13.0f} "
                      f"{plain / r['import']:>6.2f} {mib / r['zstd']:>18.0f} {r['rss']:>17.0f}")
            os.unlink(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
