"""xapisim's state directory after the simulator is killed (``kill -9``) in the middle of writes.

A client creates and destroys VDIs, VMs and VBDs as fast as it can while the
simulator, a process of its own, is killed at a random moment, three times
over. Each time it starts again from its state directory; its database must
load, every reference in it must resolve, and whatever the client saw created
more than two flush intervals before the kill must be there.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim.datamodel import NULL_REF, classes
from xapisim.simulator import FLUSH_INTERVAL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(state: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xapisim", "serve", "--state-dir", str(state), "--port", str(port),
         "--password", PASSWORD, "--auth-failure-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert "master at" in line, line + proc.stdout.read()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
    return proc


def _dangling(x) -> list[str]:
    """References in any record that name no object."""
    out = []
    for cls, cdef in classes().items():
        if cls in ("session", "event", "message", "data_source", "user"):
            continue
        try:
            records = getattr(x, cls).get_all_records()
        except XenAPI.Failure:
            continue  # a class without get_all_records
        refs = {f.name: f.type for f in cdef.fields.values()}
        for rec in records.values():
            for name, t in refs.items():
                value = rec.get(name)
                targets = [value] if t.kind == "ref" else value if (
                    t.kind == "set" and t.elem is not None and t.elem.kind == "ref") else []
                target_cls = t.name if t.kind == "ref" else (t.elem.name if t.kind == "set" and
                                                             t.elem else "")
                for ref in targets or []:
                    if ref == NULL_REF or target_cls in ("session", "user", "task", "secret"):
                        continue
                    try:
                        getattr(x, target_cls).get_uuid(ref)
                    except XenAPI.Failure:
                        out.append(f"{cls}.{name} -> {target_cls} {ref}")
    return out


def _churn(url: str, made: list, stop: threading.Event) -> None:
    """Create VDIs, VMs with a VBD, destroy some; note what was made and when."""
    s = XenAPI.Session(url)
    try:
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "kill9")
        x = s.xenapi
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        n = 0
        while not stop.is_set():
            n += 1
            vdi = x.VDI.create({"SR": sr, "virtual_size": str(1 << 20), "type": "user",
                                "name_label": f"churn-{n}", "sharable": False, "read_only": False,
                                "other_config": {}, "xenstore_data": {}, "sm_config": {},
                                "tags": [], "name_description": ""})
            vm = diskless_vm(x, f"churn-vm-{n}")
            x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                          "type": "Disk", "empty": False, "other_config": {},
                          "qos_algorithm_type": "", "qos_algorithm_params": {}})
            made.append((time.monotonic(), x.VDI.get_uuid(vdi), x.VM.get_uuid(vm)))
            if n % 3 == 0:  # and sometimes take one down again
                x.VM.destroy(vm)
                x.VDI.destroy(vdi)
                made.pop()
    except Exception:  # noqa: BLE001 - the simulator was killed under us
        pass


def test_state_survives_kill_9_mid_write(tmp_path):
    state = tmp_path / "state"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(1)
    for round_ in range(3):
        proc = _start(state, port)
        made: list = []
        stop = threading.Event()
        churn = threading.Thread(target=_churn, args=(url, made, stop))
        churn.start()
        time.sleep(2.5 + rng.random() * 1.5)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        stop.set()
        churn.join()
        assert made, "the client made nothing before the kill"

        proc = _start(state, port)
        try:
            s = XenAPI.Session(url)
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "kill9-check")
            x = s.xenapi
            assert _dangling(x) == [], f"round {round_}"
            durable = [(vdi, vm) for t, vdi, vm in made if t < killed - 2 * FLUSH_INTERVAL]
            assert durable, "nothing was made long enough before the kill"
            for vdi, vm in durable:
                x.VDI.get_by_uuid(vdi)
                x.VM.get_by_uuid(vm)
            s.xenapi.session.logout()
        finally:
            proc.terminate()
            proc.wait()
