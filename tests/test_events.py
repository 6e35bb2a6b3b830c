"""The driver's event pump: task waits share one event.from stream, and it survives a lost session."""
from __future__ import annotations

import threading
import time

import pytest

from nova_xenapi.errors import TaskTimeout, XenAPIError
from nova_xenapi.events import EventPump
from nova_xenapi.session import XenAPISession
from tests.conftest import PASSWORD, diskless_vm, login


@pytest.fixture
def pumped(sim):
    s = XenAPISession(sim.url, "root", PASSWORD, concurrent=2)
    s.pump = EventPump(s)
    s.pump.start()
    assert s.pump.synced.wait(10)
    yield s
    s.pump.stop()


def test_many_concurrent_waits_share_the_pump(sim, pumped):
    x = login(sim.url).xenapi
    vms = [diskless_vm(x, f"w{i}") for i in range(8)]
    results, errors = [], []

    def start(vm):
        try:
            results.append(pumped.call_async("VM.start", vm, False, False, timeout=30))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=start, args=(vm,)) for vm in vms]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 8
    assert pumped.peak_open <= 2  # the pump's session and one for the calls
    assert [x.VM.get_power_state(v) for v in vms] == ["Running"] * 8
    assert pumped.call_xenapi("task.get_all") == []


def test_failures_and_timeouts_through_the_pump(sim, pumped):
    x = login(sim.url).xenapi
    template = [r for r, v in x.VM.get_all_records().items() if v["is_a_template"]][0]
    with pytest.raises(XenAPIError) as e:
        pumped.call_async("VM.start", template, False, False, timeout=30)
    assert e.value.code == "VM_IS_TEMPLATE"
    task = x.task.create("never ends", "")  # a task nobody finishes
    start = time.monotonic()
    with pytest.raises(TaskTimeout, match="a stuck task did not finish within 0s"):
        pumped.wait_for_task(task, 0.5, what="a stuck task")
    assert time.monotonic() - start < 5


def test_the_pump_starts_again_after_its_session_expires(sim, pumped):
    x = login(sim.url).xenapi
    vm = diskless_vm(x, "after")
    sim.faults.add("event.from", "expire_sessions")
    x.VM.set_name_description(vm, "wakes the pump")  # ends its current wait: the next one expires
    deadline = time.monotonic() + 10
    while not sim.faults.fired and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.faults.fired, "the pump did not call event.from again"
    time.sleep(1.5)  # it pauses a second before it starts again
    pumped.call_async("VM.start", vm, False, False, timeout=30)
    assert x.VM.get_power_state(vm) == "Running"
