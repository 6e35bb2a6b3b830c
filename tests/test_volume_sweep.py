"""Every XAPI call of a volume attach and detach fails once in turn; nothing may be left behind.

The driver's own volume code (``storage/volumes.py``) runs against xapisim
and a real tgtd. A clean run first records the calls that attach_volume makes
(introduce, PBD create and plug, scan, VBD create and plug) and the calls that
detach_volume makes. Then, for every k, the run is repeated with call k
failing, once with ``INTERNAL_ERROR`` and once with the connection dropped.
After a failed attach there must be no SR, PBD or VBD of the volume. After a
failed detach, a second detach must leave none. The CHAP secret must never
be in the error.
"""
from __future__ import annotations

import pytest
import XenAPI

from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import volumes
from nova_xenapi.testing.iscsi_target import IscsiTarget
from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs

IQN = "iqn.2026-12.org.example:sweep"
SECRET = "sweep-chap-secret"
FAULTS = {"error": {"action": "error", "error": ["INTERNAL_ERROR", "injected"]},
          "drop": {"action": "drop"}}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    with IscsiTarget(tmp / "tgt") as target:
        target.add_target(IQN, [16 << 20], chap=("sweep", SECRET))
        config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0)
        with Simulator(config, tmp / "state") as sim:
            s = XenAPI.Session(sim.url)
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "sweep-check")
            vm = diskless_vm(s.xenapi, "guest")
            s.xenapi.VM.start(vm, False, False)
            session = XenAPISession(sim.url, "root", PASSWORD)
            info = {"driver_volume_type": "iscsi", "data": {
                "volume_id": "v1", "target_portal": target.portal, "target_iqn": IQN,
                "target_lun": 1, "auth_method": "CHAP", "auth_username": "sweep",
                "auth_password": SECRET}}
            yield sim, s.xenapi, session, vm, info
            session.close()


def left(x) -> dict[str, int]:
    srs = [r for r in x.SR.get_all_records().values() if r["type"] == "iscsi"]
    known = set(x.SR.get_all())
    return {"SR": len(srs),
            "PBD": sum(1 for r in x.PBD.get_all_records().values() if r["SR"] not in known)
            + sum(len(r["PBDs"]) for r in srs),
            "VBD": sum(len(x.VDI.get_VBDs(v)) for r in srs for v in r["VDIs"])}


def scrub(x) -> None:
    """Remove what a faulted run left, so the sweep goes on and reports every leftover."""
    for ref, rec in x.SR.get_all_records().items():
        if rec["type"] != "iscsi":
            continue
        for vdi in rec["VDIs"]:
            for vbd in x.VDI.get_VBDs(vdi):
                if x.VBD.get_currently_attached(vbd):
                    x.VBD.unplug(vbd)
                x.VBD.destroy(vbd)
        for pbd in rec["PBDs"]:
            if x.PBD.get_currently_attached(pbd):
                x.PBD.unplug(pbd)
            x.PBD.destroy(pbd)
        x.SR.forget(ref)


def recorded(sim, fn) -> list[str]:
    sim.faults.start_recording()
    try:
        fn()
    finally:
        calls = sim.faults.stop_recording()
    return calls


def sweep_points(calls: list[str]) -> list[tuple[str, int]]:
    """(message, how many earlier calls of it to let through) for every call in order."""
    seen: dict[str, int] = {}
    out = []
    for wire in calls:
        name = wire.removeprefix("Async.")
        out.append((name, seen.get(name, 0)))
        seen[name] = seen.get(name, 0) + 1
    return out


def test_a_fault_at_any_call_of_an_attach_leaves_no_sr_pbd_or_vbd(rig):
    sim, x, session, vm, info = rig
    nothing = {"SR": 0, "PBD": 0, "VBD": 0}
    calls = recorded(sim, lambda: volumes.attach_to(session, vm, info, "/dev/xvdb"))
    volumes.detach_from(session, vm, info)
    assert left(x) == nothing
    points = sweep_points(calls)
    assert len(points) >= 8, calls
    failures = []
    for kind, fault in FAULTS.items():
        for name, after in points:
            sim.faults.clear()
            sim.faults.add(name, after=after, count=1, **fault)
            try:
                volumes.attach_to(session, vm, info, "/dev/xvdb")
            except (XenAPIError, HostConnectionError, OSError) as exc:
                assert SECRET not in str(exc)
                if left(x) != nothing:
                    failures.append((kind, name, after, left(x)))
                    scrub(x)
            else:  # the fault hit a call whose failure the code rides out (a retried read)
                volumes.detach_from(session, vm, info)
            finally:
                sim.faults.clear()
    assert failures == [], f"{len(failures)} of {2 * len(points)} faulted attaches left storage"


def test_a_fault_at_any_call_of_a_detach_is_cleaned_up_by_a_second_detach(rig):
    sim, x, session, vm, info = rig
    nothing = {"SR": 0, "PBD": 0, "VBD": 0}
    volumes.attach_to(session, vm, info, "/dev/xvdb")
    calls = recorded(sim, lambda: volumes.detach_from(session, vm, info))
    points = sweep_points(calls)
    failures = []
    for kind, fault in FAULTS.items():
        for name, after in points:
            volumes.attach_to(session, vm, info, "/dev/xvdb")
            sim.faults.add(name, after=after, count=1, **fault)
            try:
                volumes.detach_from(session, vm, info)
            except (XenAPIError, HostConnectionError, OSError) as exc:
                assert SECRET not in str(exc)
            finally:
                sim.faults.clear()
            volumes.detach_from(session, vm, info)  # Nova's retry of a failed detach
            if left(x) != nothing:
                failures.append((kind, name, after, left(x)))
                scrub(x)
    assert failures == []
