"""The fault sweep's engine (``tests/functional/sweep.py``) on a scripted host.

The functional sweeps show what the driver does under faults; these tests
show that the engine itself fails each call of each operation once, splits a
sweep into parts that add up to the whole, hands a run's outcome to the
operation that starts there, counts leftovers, and tries a fault that a run
did not reach once more before reporting it unreached.

They need no Nova, but ``sweep.py`` imports Nova's test API, and importing
``tests.functional`` applies Nova's eventlet patching: so they run here, with
the functional tests (unittest), not in pytest's processes.
"""
from __future__ import annotations

import unittest
from collections import Counter
from unittest import mock

from tests.functional import sweep as sweep_mod
from tests.functional.sweep import Operation, SweepMixin


class _Faults:
    """xapisim's fault interface, as far as the sweep uses it: a rule fails the
    ``after``-th (0-based) next call of its name; calls are recorded on demand."""

    def __init__(self) -> None:
        self.rules: list[dict] = []
        self.fired: list[dict] = []
        self._recording: list[str] | None = None
        self._seen: Counter = Counter()

    def add(self, call: str, action: str, after: int = 0, count: int = 1) -> None:
        self.rules.append({"call": call, "action": action, "after": after})
        self._seen = Counter()

    def clear(self) -> None:
        self.rules.clear()

    def start_recording(self) -> None:
        self._recording = []

    def stop_recording(self) -> list[str]:
        calls, self._recording = self._recording or [], None
        return calls

    def call(self, name: str) -> None:
        if self._recording is not None:
            self._recording.append(name)
        nth = self._seen[name]
        self._seen[name] += 1
        for rule in self.rules:
            if rule["call"] == name and rule["after"] == nth:
                self.fired.append({"call": name})
                raise RuntimeError(f"fault at {name}")


class _Sim:
    def __init__(self) -> None:
        self.faults = _Faults()


class _Sweeper(SweepMixin):
    """The engine without Nova: a host of named objects."""

    def __init__(self) -> None:
        self.sim = _Sim()
        self.objects: set[str] = set()

    def fail(self, msg: str) -> None:
        raise AssertionError(msg)

    def inventory(self) -> dict[str, set[str]]:
        return {"VM": set(self.objects)}

    def sessions(self) -> Counter:
        return Counter()

    def secret_in(self, server: dict) -> None:
        return None

    def scrub(self, left: dict[str, set[str]]) -> None:
        self.objects -= left.get("VM", set())


def _state_machine(sweeper: _Sweeper, log: list[tuple[str, str]], leak_at: str | None = None):
    """Two operations that lead into one another: "stop" (running -> stopped) and "start"
    (stopped -> running), each three calls; a failure at the last call comes after the
    change of state, a failure at another leaves the state as it was."""
    n = [0]

    def prepare(state):
        def make() -> dict:
            n[0] += 1
            name = f"vm{n[0]}"
            sweeper.objects.add(name)
            return {"vm": name, "state": state}
        return make

    def run(name, to, calls):
        def go(ctx: dict) -> None:
            log.append((name, ctx["vm"]))
            try:
                for i, c in enumerate(calls):
                    if i == len(calls) - 1:
                        ctx["state"] = to
                    sweeper.sim.faults.call(c)
            except RuntimeError:
                if leak_at is not None and sweeper.sim.faults.fired[-1]["call"] == leak_at:
                    sweeper.objects.add(f"leak{len(log)}")
        return go

    def finish(ctx: dict) -> None:
        sweeper.objects.discard(ctx["vm"])

    stop = Operation("stop", prepare("running"), run("stop", "stopped", ["a", "b", "c"]),
                     lambda ctx: [], finish, reusable=lambda ctx: ctx["state"] == "running")
    start = Operation("start", prepare("stopped"), run("start", "running", ["d", "b", "e"]),
                      lambda ctx: [], finish, reusable=lambda ctx: ctx["state"] == "stopped")
    return stop, start


class SweepEngineTest(unittest.TestCase):
    """The engine's counting, with the default (trimmed) sweep."""

    def setUp(self) -> None:
        self.enterContext(mock.patch.object(sweep_mod, "FULL", False))

    def test_each_call_of_each_operation_fails_once_and_outcomes_are_handed_on(self):
        s, log = _Sweeper(), []
        stop, start = _state_machine(s, log)
        results = s.sweep_together([stop, start])
        assert [(r.calls, r.runs, r.fired, r.leftovers, r.problems) for r in results] == \
            [(3, 3, 3, 0, []), (3, 3, 3, 0, [])]
        # stop's last run ends stopped, where start's runs begin: one server for the whole sweep
        assert [r.prepared for r in results] == [1, 0]
        assert len({vm for _, vm in log[-6:]}) == 1
        assert s.objects == set()

    def test_parts_add_up_to_the_whole_sweep(self):
        runs = []
        for i in range(2):
            s, log = _Sweeper(), []
            stop, start = _state_machine(s, log)
            runs.append([(r.runs, r.fired) for r in s.sweep_together([stop, start], part=(i, 2))])
        assert runs == [[(2, 2), (2, 2)], [(1, 1), (1, 1)]]

    def test_leftovers_are_counted_named_and_removed(self):
        s, log = _Sweeper(), []
        stop, start = _state_machine(s, log, leak_at="e")
        stop_r, start_r = s.sweep_together([stop, start])
        assert start_r.leftovers == 1 and len(start_r.problems) == 1
        assert "expire at call 2 (e #1)" in start_r.problems[0]
        assert stop_r.leftovers == 0
        assert s.objects == set()

    def test_a_fault_not_reached_is_tried_again_then_reported(self):
        s, log = _Sweeper(), []
        stop, start = _state_machine(s, log)
        real_run = stop.run
        skipped = [0]

        def first_time_short(ctx: dict) -> None:
            # the first faulted run at "c" takes a path without it, as a run from another
            # server state may; the retry makes the call
            rules = s.sim.faults.rules
            if rules and rules[0]["call"] == "c" and not skipped[0]:
                skipped[0] += 1
                for c in ("a", "b"):
                    s.sim.faults.call(c)
                return
            real_run(ctx)

        stop.run = first_time_short
        stop_r, _ = s.sweep_together([stop, start])
        assert (stop_r.runs, stop_r.fired, stop_r.unreached) == (4, 3, [])

        s, log = _Sweeper(), []
        stop, start = _state_machine(s, log)
        real = stop.run

        def never_c(ctx: dict) -> None:
            if s.sim.faults.rules and s.sim.faults.rules[0]["call"] == "c":
                return
            real(ctx)

        stop.run = never_c
        stop_r, _ = s.sweep_together([stop, start])
        assert (stop_r.runs, stop_r.fired) == (4, 2)
        assert stop_r.unreached == ["stop: expire at call 2 (c #1)"]
        assert "not reached: stop: expire at call 2 (c #1)" in stop_r.line()
