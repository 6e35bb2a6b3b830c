"""Power-state changes pushed to Nova as lifecycle events, from XAPI's event.from.

The driver's event stream (``events.EventPump``) hands VM events here; changes
of ``power_state`` on VMs that carry ``other_config:nova_uuid`` become Nova
``LifecycleEvent``s, so Nova learns of a guest that shut itself down without
polling every VM, and the states answer Nova's power-state sync.  Only VMs
of the host this compute manages count (``vm.on_host``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from nova.virt import event as virtevent
from oslo_log import log as logging

from nova_xenapi.session import XenAPISession
from nova_xenapi.vm import on_host as vm_on_host

LOG = logging.getLogger(__name__)

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
    """Keeps VM power states from the event stream and calls ``emit(LifecycleEvent)`` on changes.

    It is a listener of the driver's ``EventPump``; ``ready`` is the pump's
    ``synced`` event (set once the first full batch is in).
    """

    def __init__(self, session: XenAPISession, emit: Callable[[Any], None]) -> None:
        self._session = session
        self._emit = emit
        self._owner: dict[str, tuple[str, bool]] = {}  # VM ref -> (nova uuid, is a rescue VM)
        self._state: dict[tuple[str, bool], str] = {}  # (nova uuid, rescue?) -> power state
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.events_sent = 0

    def follow(self, pump: Any) -> None:
        pump.add_listener(self.handle)
        self.ready = pump.synced

    def cached_state(self, uuid: str) -> str | None:
        """The XAPI power state of ``uuid``'s VM (its rescue VM if rescued), or None if unknown."""
        if not self.ready.is_set():
            return None
        with self._lock:
            return self._state.get((uuid, True)) or self._state.get((uuid, False))

    def known_instances(self) -> int | None:
        if not self.ready.is_set():
            return None
        with self._lock:
            return sum(1 for _, rescue in self._state if not rescue)

    def handle(self, ev: dict, announce: bool = True) -> None:
        ref = ev["ref"]
        if ev["operation"] == "del":
            with self._lock:
                owner = self._owner.pop(ref, None)
                if owner:
                    self._state.pop(owner, None)
            return
        snap = ev["snapshot"]
        if snap.get("is_a_template") or snap.get("is_a_snapshot"):
            return
        if not vm_on_host(snap, self._session.host_ref):  # another compute's VM (or moved away)
            with self._lock:
                owner = self._owner.pop(ref, None)
                if owner:
                    self._state.pop(owner, None)
            return
        other = snap.get("other_config", {})
        rescue = bool(other.get("nova_rescue_of"))
        uuid = other.get("nova_rescue_of") or other.get("nova_uuid")
        if not uuid:
            return
        new = snap["power_state"]
        with self._lock:
            self._owner[ref] = (uuid, rescue)
            old = self._state.get((uuid, rescue))
            self._state[(uuid, rescue)] = new
        if rescue:
            return
        kind = transition(old, new)
        if announce and kind is not None and old is not None:
            self.events_sent += 1
            self._emit(virtevent.LifecycleEvent(uuid, kind, time.time()))
