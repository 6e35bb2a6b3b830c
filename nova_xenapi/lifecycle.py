"""Power-state changes pushed to Nova as lifecycle events, from XAPI's event.from.

One thread follows the ``VM`` class with ``event.from`` and turns changes of
``power_state`` on VMs that carry ``other_config:nova_uuid`` into Nova
``LifecycleEvent``s, so Nova learns of a guest that shut itself down without
polling every VM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from nova.virt import event as virtevent
from oslo_log import log as logging

from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession

LOG = logging.getLogger(__name__)

WAIT = 10.0  # seconds one event.from may block

_TRANSITIONS = {
    ("Paused", "Running"): virtevent.EVENT_LIFECYCLE_RESUMED,
    ("Suspended", "Running"): virtevent.EVENT_LIFECYCLE_RESUMED,
    "Running": virtevent.EVENT_LIFECYCLE_STARTED,
    "Halted": virtevent.EVENT_LIFECYCLE_STOPPED,
    "Paused": virtevent.EVENT_LIFECYCLE_PAUSED,
    "Suspended": virtevent.EVENT_LIFECYCLE_SUSPENDED,
}


def transition(old: str | None, new: str) -> int | None:
    """The lifecycle event for a power state change, or None if there is none."""
    if old == new:
        return None
    return _TRANSITIONS.get((old, new)) or _TRANSITIONS.get(new)


class LifecycleWatcher:
    """Follows VM power states and calls ``emit(LifecycleEvent)`` on changes."""

    def __init__(self, session: XenAPISession, emit: Callable[[Any], None]) -> None:
        self._session = session
        self._emit = emit
        self._stop = threading.Event()
        self._states: dict[str, tuple[str, str]] = {}  # VM ref -> (nova uuid, power state)
        self._thread: threading.Thread | None = None
        self.events_sent = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xenapi-lifecycle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        token = ""
        while not self._stop.is_set():
            try:
                batch = self._session.call_xenapi("event.from", ["VM"], token, WAIT)
            except (XenAPIError, HostConnectionError) as exc:
                LOG.warning("Lifecycle events paused: %s", exc)
                token = ""
                self._stop.wait(5)
                continue
            first = token == ""
            token = batch["token"]
            for ev in batch["events"]:
                self.handle(ev, announce=not first)

    def handle(self, ev: dict, announce: bool = True) -> None:
        ref = ev["ref"]
        if ev["operation"] == "del":
            self._states.pop(ref, None)
            return
        snap = ev["snapshot"]
        uuid = snap.get("other_config", {}).get("nova_uuid")
        if not uuid or snap.get("is_a_template") or snap.get("is_a_snapshot"):
            return
        old = self._states.get(ref, (uuid, None))[1]
        new = snap["power_state"]
        self._states[ref] = (uuid, new)
        kind = transition(old, new)
        if announce and kind is not None and old is not None:
            self.events_sent += 1
            self._emit(virtevent.LifecycleEvent(uuid, kind, time.time()))
