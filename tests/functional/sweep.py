"""The fault sweep: each XAPI call an operation makes fails once in turn, and nothing is lost.

For an operation driven through Nova's API, the sweep first runs it cleanly
while xapisim records the calls it makes. Then it runs it again once for each
call *k* of that record: the *k*-th call fails, either with an error xapi
could give for it (``faults.realistic_error``, from the datamodel) or with the
connection dropped without an answer (xmlrpc.client resends a call once on a
dropped keep-alive connection, so a drop fires twice), or every XAPI session
expiring just before it, or, in a pool, the master moving to another host
just before it (the call is then answered ``HOST_IS_SLAVE``), or the master
dying just before it (with HA armed, which then makes another member master).

After every run the sweep checks:

- the server's state, as the operation's own check says Nova should show it;
- nothing the run made is left on the host once the server is deleted: no VM,
  VDI, VBD, VIF, SR, PBD or task, no file in a dom0's ``/images`` or
  ``/boot/guest``. Leftovers are counted, then removed, so that one run's
  leftovers do not hide the next run's;
- no XAPI session leaks;
- the server's fault names no password and no session.

``XENAPI_SWEEP=full`` fails every call with every kind of fault the test
class names (``KINDS``), in every operation. The default, used by the
README's test command, fails every call of every operation once, the kind
going round from one call to the next; an operation that makes the calls of
another one too (a boot with more disks, a cold migration) is failed at its
own calls only, those it shares, in order, with the other being failed in
that one's sweep. Operations that lead into one another (a resize, and the
revert or confirm that answers it) are swept together: a run that goes
through hands its server to the other operation's next run
(``sweep_together``).

The event pump's ``event.from`` is left out of the sweep, since it is not a
step of the operation; how the pump recovers is tested on its own.
"""

from __future__ import annotations

import difflib
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import fixtures
from nova import context, exception, objects
from nova.compute import vm_states
from nova.tests.functional.api import client

FULL = os.environ.get("XENAPI_SWEEP") == "full"
#: what happens at the swept call: xapisim's fault rule for each kind of failure
FAULTS = {
    "error": {"action": "error"},  # an error xapi could give for that call
    "drop": {"action": "drop", "count": 2},  # xmlrpc.client resends once on its own
    "expire": {"action": "expire_sessions"},  # every session ends, as after xapi restarts
    "master": {"action": "move_master"},  # another host of the pool becomes master
    "kill": {"action": "kill_master"},  # the master dies (with HA armed, a member takes over)
}
#: calls that are not steps of an operation
NOT_SWEPT = {"event.from"}
#: the objects a run could leave behind, as xapisim's tables name them
CLASSES = ("VM", "VDI", "VBD", "VIF", "VTPM", "SR", "PBD", "task")


@dataclass
class Operation:
    """One thing a user asks Nova to do, as the sweep runs it.

    ``prepare`` makes what the operation needs (a server, say) and returns it
    as a context; ``run`` asks Nova and waits until Nova has settled;
    ``check`` returns what is wrong with Nova's view and the host afterwards;
    ``finish`` deletes what ``prepare`` made. A run whose context is
    ``reusable`` (at once, or after ``renew``) hands it to the next run: the
    host was checked against the context's own inventory by ``check``, and is
    checked against the sweep's baseline once the context is finished.
    """

    name: str
    prepare: Callable[[], dict]
    run: Callable[[dict], None]
    check: Callable[[dict], list[str]]
    finish: Callable[[dict], None]
    #: whether what a run left (found in order by ``check``) is as ``prepare`` makes it, so
    #: the next run can start from it instead of preparing anew
    reusable: Callable[[dict], bool] | None = None
    #: takes a context that the operation left in its outcome (a server the run resized,
    #: stopped, rescued) back to where ``prepare`` leaves it by the opposite action (revert,
    #: start, unrescue), which costs Nova less than deleting the server and booting another;
    #: the context is reused if ``reusable`` then says so
    renew: Callable[[dict], None] | None = None
    #: an operation whose calls this one makes too (a plain boot, for a boot with more disks):
    #: the default sweep leaves the calls that match it, in order, to that operation's sweep
    #: and fails only this one's own; the full sweep fails every call
    shares_with: Operation | None = None
    #: the kinds of failure for this operation, if not the test class's ``KINDS``
    kinds: tuple[str, ...] | None = None


@dataclass
class Result:
    name: str
    calls: int = 0
    runs: int = 0
    fired: int = 0
    shared: int = 0  # calls left to the sweep of the operation this one shares them with
    shared_with: str = ""
    leftovers: int = 0
    prepared: int = 0  # faulted runs that needed a new context (the others reused the last)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    broken: bool = False  # the host could not be prepared for a run any more
    unreached: list[str] = field(default_factory=list)  # faults not reached, tried twice

    def line(self) -> str:
        shared = f" ({self.shared} calls as in {self.shared_with})" if self.shared else ""
        return (f"{self.name:<40} {self.calls:>4} calls {self.runs:>4} faulted runs "
                f"{self.fired:>4} fired {self.prepared:>4} prepared {self.leftovers:>3} leftovers "
                f"{len(self.problems):>3} problems {self.seconds:>5.0f} s{shared}"
                + "".join(f"\n    not reached: {u}" for u in self.unreached))


class SweepMixin:
    """For an ``XenAPIFunctionalBase`` test: sweep operations and report."""

    #: secrets that must never reach a server's fault (the test adds its own)
    secrets: tuple[str, ...] = ()
    #: the kinds of failure swept (keys of ``FAULTS``)
    KINDS: tuple[str, ...] = ("error", "drop", "expire")

    def setUp(self) -> None:
        super().setUp()
        # a failed build goes to ERROR at once, with the driver's error as its fault,
        # instead of being rescheduled onto a host that is not there
        self.flags(max_attempts=1, group="scheduler")
        # the session layer repeats a call that lost its connection after a pause; shorter here
        self.useFixture(fixtures.MonkeyPatch("nova_xenapi.session.RETRY_DELAY", 0.05))
        self._admin = context.get_admin_context()

    # ----------------------------------------------------------- waiting
    # Nova's API costs more CPU than the operation itself when polled often, and nova-compute
    # runs in this process: the waits read the instance's row, and ask the API once at the end
    def _states(self, server_id: str) -> tuple[str, str | None] | None:
        """(vm_state, task_state) of the instance, None once it is deleted."""
        try:
            inst = objects.Instance.get_by_uuid(self._admin, server_id, expected_attrs=[])
        except exception.InstanceNotFound:
            return None
        return inst.vm_state, inst.task_state

    def settled(self, server: dict, timeout: float = 90.0) -> dict:
        """The server once no task runs on it and it is not building."""
        deadline = time.monotonic() + timeout
        while (states := self._states(server["id"])) is not None and (
                states[1] is not None or states[0] == vm_states.BUILDING):
            if time.monotonic() > deadline:
                self.fail(f"server did not settle: {states}")
            time.sleep(0.1)
        return self.api.get_server(server["id"])

    def boot(self, body: dict) -> dict:
        return self.settled(self.api.post_server({"server": body}))

    def delete(self, server: dict) -> None:
        """Delete a server and wait until it is gone (another try if the first fails)."""
        server_id = server["id"]
        for _ in range(2):
            self.call_api(lambda: self.api.delete_server(server_id))
            try:
                server = self.settled(server, 60)
            except client.OpenStackApiNotFoundException:
                return
        self.fail(f"server {server['id']} was not deleted: {server.get('fault')}")

    def call_api(self, fn: Callable[[], object]) -> object | None:
        """An API action that may be refused synchronously (rescue, attach): the refusal is
        an answer too; what it says is checked by the operation."""
        try:
            return fn()
        except client.OpenStackApiException as e:
            return e

    # ---------------------------------------------------------- the host
    def inventory(self) -> dict[str, set[str]]:
        """Every object and staged file on every host, read from xapisim's own tables."""
        out: dict[str, set[str]] = {c: set() for c in CLASSES}
        out["file"] = set()
        for backend in self.sim.backends:
            store = backend.store
            vdis = store.records("VDI")
            parents = {r["sm_config"].get("vhd-parent") for r in vdis.values()}
            for cls in CLASSES:
                refs = set(store.all(cls))
                if cls == "VM":
                    refs = {r for r in refs if not store.get("VM", r)["is_a_template"]
                            and not store.get("VM", r)["is_control_domain"]}
                if cls == "VDI":
                    # a base copy under a live VHD is the SR's to coalesce; one without
                    # children is an orphan
                    refs = {r for r in refs if vdis[r]["managed"] or vdis[r]["uuid"] not in parents}
                out[cls] |= refs
            for host in backend.hosts.values():
                for sub in ("images", "boot/guest"):
                    d = host.dom0_root / sub
                    if d.is_dir():
                        out["file"] |= {f"{host.config.address}:/{sub}/{p.name}"
                                        for p in d.iterdir()}
        return out

    def sessions(self) -> Counter:
        """Live sessions by originator, over every pool, but the test's own."""
        count: Counter = Counter()
        for backend in self.sim.backends:
            for ref in backend.store.all("session"):
                count[backend.store.get("session", ref).get("originator", "")] += 1
        count.pop("functional-check", None)
        return count

    def scrub(self, left: dict[str, set[str]]) -> None:
        """Remove what a run left, so that the next run's leftovers are its own."""
        x = self.api_x
        for vm in left.get("VM", ()):
            try:
                if x.VM.get_power_state(vm) != "Halted":
                    x.VM.hard_shutdown(vm)
                x.VM.destroy(vm)
            except Exception:  # noqa: BLE001 - it may be gone already, or in another pool
                pass
        for cls in ("VBD", "VIF", "VTPM", "PBD", "VDI", "task", "SR"):
            for ref in left.get(cls, ()):
                try:
                    api = getattr(x, cls)
                    if cls in ("VBD", "VIF", "PBD") and api.get_currently_attached(ref):
                        api.unplug(ref)
                    if cls == "SR":
                        x.SR.forget(ref)
                    else:
                        api.destroy(ref)
                except Exception:  # noqa: BLE001
                    pass
        for name in left.get("file", ()):
            address, _, path = name.partition(":")
            target = self.sim.dom0_of(address) / path.lstrip("/")
            if target.is_dir():
                import shutil
                shutil.rmtree(target, True)
            else:
                target.unlink(missing_ok=True)

    def secret_in(self, server: dict) -> str | None:
        text = repr(server.get("fault", ""))
        sessions = {ref for b in self.sim.backends for ref in b.store.all("session")}
        for secret in (*self.secrets, *sessions):
            if secret and secret in text:
                return secret[:12] + "..."
        return None

    # --------------------------------------------------------- the sweep
    def sweep(self, op: Operation) -> Result:
        return self.sweep_together([op])[0]

    def sweep_together(self, ops: list[Operation], part: tuple[int, int] = (0, 1)
                       ) -> list[Result]:
        """Sweep operations that lead into one another, as one run of faults.

        A run that leaves its context where another operation starts (a resize that went
        through leaves the server awaiting the answer a revert or a confirm sweeps; a revert
        that went through leaves it where a resize starts) hands it to that operation's next
        faulted run, so that a run's outcome is the next run's start rather than undone by a
        plain action. Each operation is still failed at each of its calls once (every kind of
        fault in the full sweep), and reported on its own line.

        ``part`` (*i*, *n*) sweeps the *i*-th of *n* parts of each operation's runs (every
        *n*-th, from the *i*-th; the kinds go round as in the whole sweep), so that separate
        processes can share a costly sweep; the *n* parts together are the whole sweep."""
        index, parts = part
        suffix = f" (part {index + 1} of {parts})" if parts > 1 else ""
        results = {op.name: Result(op.name + suffix) for op in ops}
        clock = {op.name: 0.0 for op in ops}
        started = time.monotonic()
        # a first run makes what the driver keeps between operations (its cached image)
        ctx = ops[0].prepare()
        ops[0].run(ctx)
        ops[0].finish(ctx)
        base_inventory = self.inventory()
        clock[ops[0].name] = time.monotonic() - started
        recorded: dict[str, list[str]] = {}
        ctx = owner = None
        for op in ops:  # each recorded in a clean run, from the last one's outcome if it can
            mark = time.monotonic()
            if ctx is not None and not (op.reusable and op.reusable(ctx)):
                self._finish_clean(owner, ctx, base_inventory)
                ctx = None
            recorded[op.name], ctx = self._record(op, ctx)
            owner = op
            problems = op.check(ctx)
            if problems:
                self.fail(f"{op.name} fails without a fault: {problems}")
            clock[op.name] += time.monotonic() - mark
        self._finish_clean(owner, ctx, base_inventory)
        ctx = None
        pending: dict[str, deque] = {}
        for op in ops:
            mark = time.monotonic()
            result, calls = results[op.name], recorded[op.name]
            shared = set()
            if op.shares_with is not None and not FULL:
                base_calls, base_ctx = self._record(op.shares_with)
                op.shares_with.finish(base_ctx)
                shared = _matching(base_calls, calls)
                result.shared_with = op.shares_with.name
            steps = [(k, wire) for k, wire in enumerate(calls) if wire not in NOT_SWEPT]
            result.calls = len(steps)
            result.shared = sum(k in shared for k, _ in steps)
            kinds = op.kinds or self.KINDS
            pending[op.name] = deque(
                (k, wire, calls[:k].count(wire), kind, False)
                for i, (k, wire) in enumerate((k, w) for k, w in steps if k not in shared)
                if i % parts == index
                for kind in (kinds if FULL else (kinds[i % len(kinds)],)))
            clock[op.name] += time.monotonic() - mark
        baseline = self.inventory()
        sessions = self.sessions()
        history: list[str] = []  # the runs the current context went through
        while True:
            todo = [op for op in ops if pending[op.name]]
            if not todo:
                break
            mark = time.monotonic()
            op = self._next(todo, ctx)
            if op is None:  # no operation starts where the context is: a new one
                if ctx is not None:
                    self._finish(owner, ctx, history, results[owner.name], baseline)
                op = todo[0]
                history = []
                results[op.name].prepared += 1
                try:
                    ctx = op.prepare()
                except Exception as e:  # noqa: BLE001 - an earlier run damaged the host
                    results[op.name].problems.append(
                        f"{op.name}: could not prepare a run: {e}"[:600])
                    results[op.name].broken = True
                    pending[op.name].clear()
                    ctx = None
                    continue
            k, wire, nth, kind, again = pending[op.name].popleft()
            result = results[op.name]
            result.runs += 1
            label = f"{op.name}: {kind} at call {k} ({wire} #{nth + 1})"
            history.append(label)
            owner = op
            before = result.fired
            if not self._faulted_run(op, ctx, wire, nth, kind, label, result, sessions):
                self._finish(op, ctx, history, result, baseline)
                ctx = None
            if result.fired == before and not again:
                # a run from another server state may take another path than the recorded
                # one and not make that call: once more, last, from where the sweep is then
                pending[op.name].append((k, wire, nth, kind, True))
            elif result.fired == before:
                result.unreached.append(label)
            clock[op.name] += time.monotonic() - mark
        if ctx is not None:
            self._finish(owner, ctx, history + ["the last run"], results[owner.name], baseline)
        for op in ops:
            results[op.name].seconds = clock[op.name]
        return [results[op.name] for op in ops]

    def _next(self, todo: list[Operation], ctx: dict | None) -> Operation | None:
        """The first operation with runs to do that starts where ``ctx`` is; else the first
        one, if its ``renew`` takes the context there; else None."""
        if ctx is None:
            return None
        for op in todo:
            if _starts_from(op, ctx):
                return op
        first = todo[0]
        if first.renew is not None and first.reusable is not None:
            try:
                first.renew(ctx)
            except Exception:  # noqa: BLE001 - then the context is finished as usual
                return None
            if _starts_from(first, ctx):
                return first
        return None

    def _record(self, op: Operation, ctx: dict | None = None) -> tuple[list[str], dict]:
        """The calls one clean run of ``op`` makes (from ``ctx``, or a context it prepares),
        and the run's context (not finished)."""
        if ctx is None:
            ctx = op.prepare()
        self.sim.faults.start_recording()
        try:
            op.run(ctx)
        finally:
            calls = self.sim.faults.stop_recording()
        return calls, ctx

    def _finish_clean(self, op: Operation, ctx: dict | None,
                      base_inventory: dict[str, set[str]]) -> None:
        """Finish the context of ``op``'s clean run, which must leave nothing."""
        if ctx is None:
            return
        op.finish(ctx)
        left = _diff(self.inventory(), base_inventory)
        if left:
            self.fail(f"{op.name} leaves {left} without a fault")

    def _faulted_run(self, op: Operation, ctx: dict, wire: str, nth: int, kind: str,
                     label: str, result: Result, sessions: Counter) -> bool:
        """One run with one fault; whether it found nothing wrong (its context may go on)."""
        problems_before = len(result.problems)
        self.sim.faults.fired.clear()
        rule = FAULTS[kind]
        self.sim.faults.add(wire, rule["action"], after=nth, count=rule.get("count", 1))
        try:
            op.run(ctx)
        except Exception as e:  # noqa: BLE001 - a run that cannot finish is a finding
            result.problems.append(f"{label}: the run broke: {type(e).__name__}: {e}")
        finally:
            self.sim.faults.clear()
        result.fired += bool(self.sim.faults.fired)
        for problem in op.check(ctx):
            result.problems.append(f"{label}: {problem}")
        # the server as the run left it (``settled`` read it last): its fault names no secret
        server = ctx.get("server")
        secret = self.secret_in(server) if server is not None else None
        if secret:
            result.problems.append(f"{label}: the fault shows a secret ({secret})")
        grown = self.sessions() - sessions
        if grown:
            result.problems.append(f"{label}: sessions leaked: {dict(grown)}")
        return len(result.problems) == problems_before

    def _finish(self, op: Operation, ctx: dict, history: list[str], result: Result,
                baseline: dict[str, set[str]]) -> None:
        """Delete what the context holds; count and remove what is left beyond the baseline
        (named after the runs the context went through, the last one first)."""
        label = " after ".join(reversed(history[-3:]))
        try:
            op.finish(ctx)
        except Exception as e:  # noqa: BLE001
            result.problems.append(f"{label}: cleaning up failed: {type(e).__name__}: {e}")
        left = _diff(self.inventory(), baseline)
        if left:
            result.leftovers += sum(len(v) for v in left.values())
            result.problems.append(f"{label}: left {_names(left)}")
            self.scrub(left)


def _starts_from(op: Operation, ctx: dict) -> bool:
    """Whether ``op``'s next run may start from ``ctx`` (not if asking raises: the server
    may be gone)."""
    try:
        return op.reusable is not None and bool(op.reusable(ctx))
    except Exception:  # noqa: BLE001
        return False


def _matching(base: list[str], calls: list[str]) -> set[int]:
    """Positions in ``calls`` of the calls that match ``base``'s, in order (difflib's longest
    matching blocks)."""
    blocks = difflib.SequenceMatcher(None, base, calls, autojunk=False).get_matching_blocks()
    return {j + i for _, j, size in blocks for i in range(size)}


def _diff(now: dict[str, set[str]], before: dict[str, set[str]]) -> dict[str, set[str]]:
    return {k: now[k] - before.get(k, set()) for k in now if now[k] - before.get(k, set())}


def _names(left: dict[str, set[str]]) -> str:
    return ", ".join(f"{len(v)} {k}" for k, v in sorted(left.items()))
