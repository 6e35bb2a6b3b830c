"""Volume attach/detach time, and raw I/O of an attached volume through XAPI vs qemu-img on the LUN.

A private tgtd exports one LUN (with CHAP), as Cinder's LVM driver would. The
driver's own volume code (``nova_xenapi.storage.volumes``) makes the
connection the way ``attach_volume`` does: it introduces the iscsi SR, plugs
its PBD (a login through libiscsi), scans, and attaches the LUN's VDI to a
halted VM. It then detaches and forgets the SR. The baseline is one
``iscsi-ls -s`` login to the same target, in the same run.

Raw I/O writes the LUN's whole size through XAPI's ``/import_raw_vdi`` (and
waits for its task) and reads it back through ``/export_raw_vdi``. The
baseline is ``qemu-img convert`` straight between a local file and the LUN
(libiscsi), the slowest component the XAPI path must pass through. The
ratio that matters is XAPI's MiB/s over qemu-img's.

Run: ``.venv/bin/python benchmarks/volume_io.py [MiB ...]`` (default 64 256)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import XenAPI

from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import volumes
from nova_xenapi.testing.iscsi_target import IscsiTarget
from nova_xenapi.testing.xapi_objects import diskless_vm
from xapisim import SimConfig, Simulator, host_configs

MIB = 1 << 20
PASSWORD = "bench"
CHAP = ("bench", "bench-chap-secret")


def connection_info(target: IscsiTarget, iqn: str) -> dict:
    return {"driver_volume_type": "iscsi", "data": {
        "volume_id": "bench", "target_portal": target.portal, "target_iqn": iqn, "target_lun": 1,
        "auth_method": "CHAP", "auth_username": CHAP[0], "auth_password": CHAP[1]}}


def attach_detach(session: XenAPISession, vm: str, info: dict) -> tuple[float, float]:
    t = time.perf_counter()
    volumes.attach_to(session, vm, info, "/dev/xvdb")
    attached = time.perf_counter() - t
    t = time.perf_counter()
    volumes.detach_from(session, vm, info)
    return attached, time.perf_counter() - t


def login_once(target: IscsiTarget, iqn: str) -> float:
    env = {**os.environ, "LIBISCSI_CHAP_PASSWORD": CHAP[1]}
    t = time.perf_counter()
    subprocess.run(["iscsi-ls", "-s", f"iscsi://{CHAP[0]}@{target.portal}/"], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def wait(x, task: str) -> None:
    while x.task.get_status(task) == "pending":
        time.sleep(0.01)
    if x.task.get_status(task) != "success":
        raise RuntimeError(x.task.get_error_info(task))
    x.task.destroy(task)


def xapi_write_read(sim, s, vdi: str, data_file: Path) -> tuple[float, float]:
    x = s.xenapi
    task = x.task.create("bench write", "")
    t = time.perf_counter()
    with open(data_file, "rb") as body:
        req = urllib.request.Request(
            f"{sim.url}/import_raw_vdi?session_id={s._session}&vdi={vdi}&task_id={task}", data=body,
            method="PUT", headers={"Content-Length": str(data_file.stat().st_size)})
        urllib.request.urlopen(req).read()
    wait(x, task)
    wrote = time.perf_counter() - t
    t = time.perf_counter()
    with urllib.request.urlopen(f"{sim.url}/export_raw_vdi?session_id={s._session}&vdi={vdi}"
                                "&format=raw") as r:
        while r.read(4 * MIB):
            pass
    return wrote, time.perf_counter() - t


def qemu_write_read(target: IscsiTarget, iqn: str, data_file: Path, out: Path) -> tuple[float, float]:
    env = {**os.environ, "LIBISCSI_CHAP_PASSWORD": CHAP[1]}
    url = f"iscsi://{CHAP[0]}@{target.portal}/{iqn}/1"
    t = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(data_file), url],
                   env=env, check=True, capture_output=True)
    wrote = time.perf_counter() - t
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(out)], env=env,
                   check=True, capture_output=True)
    return wrote, time.perf_counter() - t


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with IscsiTarget(root / "tgt") as target:
            iqns = [f"iqn.2026-12.org.example:bench-{mib}" for mib in sizes]
            for mib, iqn in zip(sizes, iqns, strict=True):
                target.add_target(iqn, [mib * MIB], chap=CHAP)
            config = SimConfig(password=PASSWORD, hosts=host_configs(1, 16384, 4))
            with Simulator(config, root / "state") as sim:
                session = XenAPISession(sim.url, "root", PASSWORD)
                s = XenAPI.Session(sim.url)
                s.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
                vm = diskless_vm(s.xenapi, "bench-guest")
                info = connection_info(target, iqns[0])
                runs = [attach_detach(session, vm, info) for _ in range(5)]
                login = min(login_once(target, iqns[0]) for _ in range(5))
                attach = min(a for a, _ in runs)
                detach = min(d for _, d in runs)
                print("volume attach and detach (iscsi SR introduce, PBD plug, scan, VBD; then "
                      "VBD, PBD unplug, SR.forget), best of 5")
                print(f"  attach {attach * 1000:6.0f} ms   detach {detach * 1000:6.0f} ms   "
                      f"one iscsi-ls login {login * 1000:5.0f} ms   attach/login "
                      f"{attach / login:5.1f}")
                print("raw I/O of an attached volume: XAPI /import_raw_vdi, /export_raw_vdi vs "
                      "qemu-img on the LUN (libiscsi); best of 2")
                print(f"{'size':>8} {'XAPI write':>11} {'qemu write':>11} {'ratio':>6} "
                      f"{'XAPI read':>10} {'qemu read':>10} {'ratio':>6}   (MiB/s)")
                for mib, iqn in zip(sizes, iqns, strict=True):
                    data = root / f"data-{mib}"
                    with open(data, "wb") as f:
                        for _ in range(mib):
                            f.write(os.urandom(MIB))
                    info = connection_info(target, iqn)
                    _, vdi = volumes.connect(session, volumes.IscsiVolume.from_connection_info(info))
                    xw, xr = map(min, zip(*(xapi_write_read(sim, s, vdi, data) for _ in range(2)),
                                          strict=True))
                    qw, qr = map(min, zip(*(qemu_write_read(target, iqn, data, root / "out")
                                            for _ in range(2)), strict=True))
                    volumes.release(session, volumes.IscsiVolume.from_connection_info(info))
                    print(f"{mib:>6}Mi {mib / xw:>11.0f} {mib / qw:>11.0f} {qw / xw:>6.2f} "
                          f"{mib / xr:>10.0f} {mib / qr:>10.0f} {qr / xr:>6.2f}")
                    data.unlink()
                session.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [64, 256])
