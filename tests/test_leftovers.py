"""A process killed with SIGKILL in the middle of a disk operation, and the start-up sweep after it.

Each test runs the driver's own code in a child process against xapisim,
kills the child while the operation is half done (the child says when),
and checks what ``leftovers.sweep`` finds in a new session: exactly what the
dead process made for the operation, and nothing of another host's compute.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nova_xenapi import leftovers, snapshot
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks, image_cache
from tests.conftest import PASSWORD, diskless_vm

MIB = 1 << 20

CHILD_PRELUDE = """
import sys, time, types
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
s = XenAPISession(sys.argv[1], "root", sys.argv[2])
def ready():
    print("ready", flush=True)
    time.sleep(600)
"""


def run_until_killed(sim, body: str, *args: str, until=None) -> None:
    """Run ``body`` (after CHILD_PRELUDE) in a child process; SIGKILL it once it calls
    ``ready()``, or once ``until()`` is true."""
    child = subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body),
                              sim.url, PASSWORD, *args], stdout=subprocess.PIPE, text=True)
    try:
        if until is None:
            line = child.stdout.readline()
            assert line.strip() == "ready", f"the child ended early ({child.wait()})"
        else:
            _wait(until, f"the child to get there ({child.poll()})")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()


def _wait(check, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds:.0f}s for {what}"
        time.sleep(0.02)


@pytest.fixture
def session(sim):
    s = XenAPISession(sim.url, "root", PASSWORD)
    yield s
    s.close()


def _instance_disk(s: XenAPISession, x, name: str) -> tuple[str, str]:
    """A halted VM with a root disk, as spawn leaves one: (VM, root VDI)."""
    sr = disks.find_sr(s, "default-sr:true")
    vm = diskless_vm(x.xenapi, name)
    vdi = disks.create_vdi(s, sr, "inst-1", "root", f"{name} root", 8 * MIB)
    disks.create_vbd(s, vm, vdi, disks.ROOT, bootable=True)
    return vm, vdi


def _vdis(s: XenAPISession) -> dict[str, dict]:
    return s.call_xenapi("VDI.get_all_records")


def test_killed_while_a_disk_is_plugged_into_dom0(sim, session, xapi):
    _, root = _instance_disk(session, xapi, "instance-1")
    vbds_before = set(session.call_xenapi("VBD.get_all"))
    run_until_killed(sim, f"""
        dom0 = s.call_xenapi("host.get_control_domain", s.host_ref)
        with disks.plugged(s, dom0, "{root}"):
            ready()
    """)
    left = set(session.call_xenapi("VBD.get_all")) - vbds_before
    assert len(left) == 1 and session.call_xenapi("VBD.get_currently_attached", left.pop())
    removed = leftovers.sweep(session)
    assert len(removed) == 1 and removed[0].startswith("VBD")
    assert set(session.call_xenapi("VBD.get_all")) == vbds_before
    assert root in _vdis(session)  # the disk is the instance's: deleting the server removes it


@pytest.mark.parametrize("moment", ["during VDI.snapshot", "during the upload"])
def test_killed_mid_snapshot(sim, session, xapi, moment):
    _, root = _instance_disk(session, xapi, "instance-1")
    before = set(_vdis(session))
    until = None
    if moment == "during VDI.snapshot":
        # held in VDI.snapshot when killed: xapi finishes a snapshot whose caller died, so the
        # new VDI appears after the kill, carrying the mark the root had
        sim.faults.add("VDI.snapshot", "delay", seconds=0.5)
        until = lambda: sim.faults.fired  # noqa: E731
    run_until_killed(sim, """
        from nova_xenapi import snapshot
        host = types.SimpleNamespace(session=s, default_os_type="linux", coalesce_max_attempts=0,
                                     handler=types.SimpleNamespace(upload=lambda *a: ready()))
        inst = types.SimpleNamespace(name="instance-1", uuid="inst-1", os_type=None,
                                     auto_disk_config=False)
        snapshot.snapshot(host, None, inst, "image-1", lambda **kw: None)
    """, until=until)
    def new() -> list[dict]:  # on a file SR the root also gets a base copy (not managed)
        return [r for ref, r in _vdis(session).items() if ref not in before and r["managed"]]
    _wait(new, "the snapshot")
    (snap,) = new()
    assert snap["is_a_snapshot"]
    assert snap["other_config"][snapshot.SNAPSHOTTING] == session.host_uuid
    assert leftovers.sweep(session) == [f"VDI {snap['uuid']} (snapshot being uploaded)"]
    assert new() == []
    assert snapshot.SNAPSHOTTING not in _vdis(session)[root]["other_config"]


def test_killed_while_filling_a_cached_image(sim, session):
    sr = disks.find_sr(session, "default-sr:true")
    before = set(_vdis(session))
    run_until_killed(sim, f"""
        from nova_xenapi.storage import image_cache
        def fetch(size, label, other_config):
            disks.create_vdi(s, "{sr}", "", "image-cache", label, size, other_config=other_config)
            ready()
        image_cache.base_image(s, "{sr}", types.SimpleNamespace(id="image-1"), 8 * {MIB}, fetch)
    """)
    (half,) = set(_vdis(session)) - before
    assert image_cache.find(session, sr, "image-1") is None  # never cloned from
    uuid = _vdis(session)[half]["uuid"]
    assert leftovers.sweep(session) == [f"VDI {uuid} (half-written cached image)"]
    assert set(_vdis(session)) == before


def test_marks_of_another_hosts_compute_are_left_alone(session, xapi):
    sr = disks.find_sr(session, "default-sr:true")
    other = "another-host-uuid"
    _, root = _instance_disk(session, xapi, "instance-2")
    snap = session.call_xenapi("VDI.snapshot", root, {})
    session.call_xenapi("VDI.add_to_other_config", snap, snapshot.SNAPSHOTTING, other)
    base = disks.create_vdi(session, sr, "", "image-cache", "base", MIB,
                            other_config={image_cache.CACHE_KEY: "i", image_cache.FILLING: other})
    dom0 = session.call_xenapi("host.get_control_domain", session.host_ref)
    vbd = disks.create_vbd(session, dom0, root, "9", other_config={disks.PLUGGED: other})
    assert leftovers.sweep(session) == []
    assert {snap, base, root} <= set(_vdis(session))
    assert vbd in session.call_xenapi("VBD.get_all")
