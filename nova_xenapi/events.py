"""One ``event.from`` stream for everything the driver waits for or watches.

A single thread follows the ``task`` and ``VM`` classes.  Callers waiting
for a task register it and sleep on an event instead of each holding a
session in its own ``event.from`` loop, so a hundred concurrent waits cost
one XAPI session; VM changes go to listeners (power-state sync).  After a
lost connection, or when the session starts talking to another master or
pool, the stream restarts from an empty token, whose first batch holds every
current object, so no finished task is missed; while the stream still
follows a former pool, a waiter reads its task directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from nova_xenapi.errors import HostConnectionError, XenAPIError

LOG = logging.getLogger(__name__)

WAIT = 10.0  # seconds one event.from may block
CLASSES = ["task", "VM"]
GONE = {"status": "gone"}
SLICE = 1.0  # seconds a waiter sleeps before checking that the stream follows its pool
PATIENCE = 5  # failed reads of a task in a row before a waiter gives up


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.snapshot: dict | None = None


class EventPump:
    """Follows tasks and VMs of one session's pool."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._waiters: dict[str, _Waiter] = {}
        self._listeners: list[Callable[[dict, bool], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set once the first full batch has been handed out
        self._following = self._generation_now()  # the session generation the stream is on

    def _generation_now(self) -> int:
        return getattr(self._session, "generation", 0)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def add_listener(self, fn: Callable[[dict, bool], None]) -> None:
        """``fn(event, announce)`` for every VM event; ``announce`` is False in a first full batch."""
        self._listeners.append(fn)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xenapi-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, task: str, timeout: float | None) -> dict | None:
        """The task's final record (status not pending; GONE if destroyed), or None on timeout.

        The task is read once after registering, since it may have finished before; if
        that read fails, it is read again after each slice (the task runs on regardless),
        and the error is raised only after ``PATIENCE`` failed reads in a row."""
        waiter = _Waiter()
        with self._lock:
            self._waiters[task] = waiter
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            failures = 0
            rec = self._read(task)
            while True:
                if isinstance(rec, Exception):
                    failures += 1
                    if failures >= PATIENCE:
                        raise rec
                else:
                    failures = 0
                    if rec is not None and rec["status"] != "pending":
                        return rec
                rec = None
                if waiter.done.wait(SLICE if deadline is None
                                    else max(0.0, min(SLICE, deadline - time.monotonic()))):
                    return waiter.snapshot
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                if failures or self._following != self._generation_now():
                    # unknown, or the stream is on a former pool: look at the task itself
                    rec = self._read(task)
        finally:
            with self._lock:
                self._waiters.pop(task, None)

    def _read(self, task: str) -> dict | Exception:
        """The task's record, GONE, or the error that reading it met."""
        try:
            rec = self._session.get_record("task", task)
        except (XenAPIError, HostConnectionError) as exc:
            LOG.warning("could not read XAPI task %s (%s); it runs on, reading again", task, exc)
            return exc
        return GONE if rec is None else rec

    def _run(self) -> None:
        token = ""
        while not self._stop.is_set():
            if self._following != self._generation_now():
                token = ""  # another master or pool: its tokens mean nothing here
                self._following = self._generation_now()
            try:
                batch = self._session.call_xenapi("event.from", CLASSES, token, WAIT)
            except (XenAPIError, HostConnectionError) as exc:
                LOG.warning("XAPI event stream interrupted (%s); starting again", exc)
                token = ""
                self._stop.wait(1.0)
                continue
            first = token == ""
            token = batch["token"]
            for ev in batch["events"]:
                if ev["class"] == "task":
                    self._task_event(ev)
                elif ev["class"] == "vm":
                    for listener in self._listeners:
                        listener(ev, not first)
            self.synced.set()

    def _task_event(self, ev: dict) -> None:
        with self._lock:
            waiter = self._waiters.get(ev["ref"])
        if waiter is None:
            return
        if ev["operation"] == "del":
            waiter.snapshot = GONE
            waiter.done.set()
        elif ev["snapshot"]["status"] != "pending":
            waiter.snapshot = ev["snapshot"]
            waiter.done.set()
