"""xapisim alone: walk VMs through their life with the official XenAPI SDK (python -m demo.sdk_walk).

No Nova here: it shows what xapisim offers any XenAPI client. It starts a fresh
simulated XenServer pool, makes VMs from a template, uploads real disk bytes, drives
their power lifecycle with Async calls waited on through ``event.from``,
snapshots them, checks the bytes round-trip (raw and as an XVA export imported
back), and deletes everything again,
printing what happened and how long each step took.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import urllib.request

import XenAPI

from xapisim import SimConfig, Simulator, host_configs

GIB = 1 << 30
MIB = 1 << 20


def wait_task(x, task: str, timeout: float = 60.0):
    """Wait for a task with event.from (no polling), return its result."""
    token = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = x.event_from([f"task/{task}"], token, 5.0)
        token = batch["token"]
        for ev in batch["events"]:
            snap = ev.get("snapshot") or {}
            if snap.get("status") == "success":
                res = snap["result"]
                x.task.destroy(task)
                return res.removeprefix("<value>").removesuffix("</value>")
            if snap.get("status") in ("failure", "cancelled"):
                x.task.destroy(task)
                raise XenAPI.Failure(snap["error_info"])
    raise TimeoutError(task)


def upload(x, url: str, session: str, vdi: str, data: bytes) -> None:
    """PUT raw bytes into a VDI under a task of ours, and wait for that task."""
    task = x.task.create("upload", "")
    req = urllib.request.Request(
        f"{url}/import_raw_vdi?session_id={session}&vdi={vdi}&format=raw&task_id={task}",
        data=data, method="PUT")
    urllib.request.urlopen(req).read()
    wait_task(x, task)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []

    def step(self, label: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t
        self.rows.append((label, dt))
        print(f"  {label:<48} {dt * 1000:8.1f} ms")
        return out


def import_xva(x, url: str, session: str, xva: bytes) -> str:
    """PUT an XVA to /import and wait for its task; the new VM."""
    import xmlrpc.client
    task = x.task.create("demo import", "")
    req = urllib.request.Request(f"{url}/import?session_id={session}&task_id={task}", data=xva,
                                 method="PUT")
    urllib.request.urlopen(req).read()
    while x.task.get_status(task) == "pending":
        time.sleep(0.01)
    rec = x.task.get_record(task)
    x.task.destroy(task)
    if rec["status"] != "success":
        raise RuntimeError(f"import failed: {rec['error_info']}")
    wrapped = f"<methodResponse><params><param>{rec['result']}</param></params></methodResponse>"
    return xmlrpc.client.loads(wrapped)[0][0][0]


def host_memory(x) -> str:
    parts = []
    for h in x.host.get_all():
        m = x.host_metrics.get_record(x.host.get_metrics(h))
        parts.append(f"{x.host.get_name_label(h)}: {int(m['memory_free']) // MIB} MiB free "
                     f"of {int(m['memory_total']) // MIB}")
    return "; ".join(parts)


def run(servers: int, image_mib: int) -> int:
    state = tempfile.mkdtemp(prefix="xapisim-demo-")
    config = SimConfig(password="demo", hosts=host_configs(1, 32768, 16),
                       auth_failure_delay=0.5)
    with Simulator(config, state) as sim:
        print(f"xapisim started: {sim.url} (state in {state})")
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", "demo", "2.21", "nova-xenapi-demo")
        x = s.xenapi
        pool = x.pool.get_all()[0]
        sr = x.pool.get_default_SR(pool)
        net = [n for n in x.network.get_all()
               if x.network.get_bridge(n) == "xenbr0"][0]
        print(f"host: {host_memory(x)}")
        print(f"default SR: {x.SR.get_name_label(sr)} ({x.SR.get_type(sr)}, "
              f"{int(x.SR.get_physical_size(sr)) // GIB} GiB)")
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        image = os.urandom(image_mib * MIB)
        digest = hashlib.sha256(image).hexdigest()
        rep = Report()
        vms = []
        for i in range(servers):
            print(f"server demo-{i}:")
            vm = rep.step("VM.clone (from template)", x.VM.clone, template, f"demo-{i}")
            vdi = rep.step("VDI.create (root disk, 1 GiB)", x.VDI.create, {
                "name_label": f"demo-{i} root", "name_description": "", "SR": sr,
                "virtual_size": str(GIB), "type": "user", "sharable": False,
                "read_only": False, "other_config": {}})
            rep.step(f"PUT /import_raw_vdi ({image_mib} MiB)", upload, x, sim.url, s._session,
                     vdi, image)
            rep.step("VBD.create", x.VBD.create, {
                "VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
            rep.step("VIF.create", x.VIF.create, {
                "VM": vm, "network": net, "device": "0", "MAC": "", "MTU": "1500",
                "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
            x.VM.set_is_a_template(vm, False)
            x.VM.set_memory_limits(vm, str(512 * MIB), str(GIB), str(GIB), str(GIB))
            rep.step("Async.VM.start + event.from", lambda v=vm: wait_task(
                x, x.Async.VM.start(v, False, False)))
            vms.append((vm, vdi))
        print(f"host after boot: {host_memory(x)}")
        for vm, vdi in vms:
            name = x.VM.get_name_label(vm)
            print(f"lifecycle of {name}:")
            rep.step("VM.clean_reboot", x.VM.clean_reboot, vm)
            rep.step("VM.pause", x.VM.pause, vm)
            rep.step("VM.unpause", x.VM.unpause, vm)
            rep.step("VM.suspend", x.VM.suspend, vm)
            rep.step("VM.resume", x.VM.resume, vm, False, False)
            snap = rep.step("VM.snapshot", x.VM.snapshot, vm, f"{name}-snap")
            rep.step("VM.clean_shutdown", x.VM.clean_shutdown, vm)
            url = f"{sim.url}/export_raw_vdi?session_id={s._session}&vdi={vdi}&format=raw"
            data = rep.step("GET /export_raw_vdi", lambda u=url: urllib.request.urlopen(u).read())
            ok = hashlib.sha256(data[:len(image)]).hexdigest() == digest
            print(f"  disk bytes round-trip: {'OK' if ok else 'MISMATCH'}")
            if not ok:
                return 1
            xva = rep.step("GET /export (XVA)", lambda v=vm: urllib.request.urlopen(
                f"{sim.url}/export?session_id={s._session}&ref={v}").read())
            copy = rep.step("PUT /import (XVA) + task", import_xva, x, sim.url, s._session, xva)
            copy_vdi = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(copy)][0]
            back = urllib.request.urlopen(f"{sim.url}/export_raw_vdi?session_id={s._session}"
                                          f"&vdi={copy_vdi}").read()
            ok = hashlib.sha256(back[:len(image)]).hexdigest() == digest
            print(f"  XVA round trip ({len(xva) // MIB} MiB archive): {'OK' if ok else 'MISMATCH'}")
            if not ok:
                return 1
            for v in [snap, vm, copy]:
                disks = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(v)]
                rep.step("VM.destroy", x.VM.destroy, v)
                for d in disks:
                    rep.step("VDI.destroy", x.VDI.destroy, d)
        print(f"host after delete: {host_memory(x)}")
        left = sim.summary()
        print(f"left on the host: {left['vms']} VMs, {left['vdis']} VDIs, {left['vbds']} VBDs, "
              f"{left['vifs']} VIFs, {left['tasks']} tasks")
        total = sum(dt for _, dt in rep.rows)
        print(f"{len(rep.rows)} operations in {total:.2f} s")
        x.session.logout()
        return 0 if (left["vms"], left["vdis"], left["vbds"], left["vifs"]) == (0, 0, 0, 0) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--image-mib", type=int, default=16)
    args = ap.parse_args()
    return run(args.servers, args.image_mib)


if __name__ == "__main__":
    sys.exit(main())
