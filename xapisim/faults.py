"""Fault injection: make chosen calls fail, stall, drop, or expire sessions.

A rule matches a wire name (``VM.start``, ``Async.VM.start`` is matched by
its base name, ``*`` matches all) and fires ``count`` times (-1 = forever)
after skipping ``after`` matching calls.  Actions:

* ``error``: raise the given XAPI error ``[code, params...]``, or with no code
  one that xapi could give for that call (``realistic_error``). For an
  ``Async.`` call the error is the task's, as xapi reports a failed operation;
* ``delay``: sleep ``seconds`` then run the call normally;
* ``drop``: close the connection without answering;
* ``expire_sessions``: destroy every session, then answer SESSION_INVALID;
* ``kill_master``: the master stops answering (connections are refused); with
  HA armed (``pool.enable_ha``) a live member becomes master, as HA elects one;
* ``move_master``: another live host of the pool becomes its master (as
  ``pool.designate_new_master`` makes it), and the call, which reached the
  old master, is answered ``HOST_IS_SLAVE`` with the new master's address.

``start_recording``/``stop_recording`` list the messages clients called, in
order, so a test can fail each of them in turn (over HTTP: ``POST``, ``GET``
and ``DELETE /_xapisim/calls``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .datamodel import classes, error_param_names
from .errors import XapiError
from .sm_errors import sm_error

ACTIONS = ("error", "delay", "drop", "expire_sessions", "kill_master", "move_master")


class DropConnection(Exception):
    """Tells the HTTP front to close the socket without a reply."""


@dataclass
class Rule:
    match: str
    action: str
    error: list[str] = field(default_factory=list)
    seconds: float = 0.0
    count: int = 1
    after: int = 0
    id: int = 0

    def to_dict(self) -> dict:
        return {"id": self.id, "match": self.match, "action": self.action, "error": self.error,
                "seconds": self.seconds, "count": self.count, "after": self.after}


class Faults:
    """The fault rules of one simulator (shared by its pools)."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._next = 1
        self.killed_hosts: set[str] = set()  # addresses that stopped answering
        self.fired: list[dict] = []
        self._calls: list[str] | None = None  # wire names, in order, while recording

    def add(self, match: str, action: str, *, error: list[str] | None = None,
            seconds: float = 0.0, count: int = 1, after: int = 0) -> Rule:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; one of {ACTIONS}")
        with self._lock:
            rule = Rule(match, action, list(error or []), float(seconds), int(count), int(after),
                        self._next)
            self._next += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.killed_hosts.clear()

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def armed(self) -> bool:
        """Whether any rule may still fire (a call may then sleep, drop or expire sessions)."""
        return bool(self._rules)

    def _take(self, wire: str) -> Rule | None:
        if not self._rules:  # no lock needed to see there is nothing to take
            return None
        with self._lock:
            for rule in self._rules:
                if rule.match in ("*", wire):
                    if rule.after > 0:
                        rule.after -= 1
                        continue
                    if rule.count == 0:
                        continue
                    if rule.count > 0:
                        rule.count -= 1
                    self.fired.append({"rule": rule.id, "call": wire})
                    return rule
            self._rules = [r for r in self._rules if r.count != 0]
            return None

    def start_recording(self) -> None:
        """Note every call's message from now on (what a client did, in order)."""
        with self._lock:
            self._calls = []

    def stop_recording(self) -> list[str]:
        with self._lock:
            calls, self._calls = self._calls or [], None
            return calls

    def recorded(self) -> list[str] | None:
        """The calls noted so far (recording goes on), or None when not recording."""
        with self._lock:
            return None if self._calls is None else list(self._calls)

    def before_call(self, backend, host_ref: str, wire: str, args: list | tuple = (),
                    is_async: bool = False) -> XapiError | None:
        """Note the call and fire the first rule that matches it.  An error for an
        ``Async.`` call is returned, for its task to fail with, instead of raised."""
        with self._lock:
            if self._calls is not None:
                self._calls.append(wire)
        rule = self._take(wire)
        if rule is None:
            return None
        if rule.action == "error":
            error = (XapiError(rule.error[0], *rule.error[1:]) if rule.error
                     else realistic_error(wire, args))
            if is_async:
                return error
            raise error
        if rule.action == "delay":
            time.sleep(rule.seconds)
        elif rule.action == "drop":
            raise DropConnection()
        elif rule.action == "expire_sessions":
            for s in backend.store.all("session"):
                backend.logout(s)
            raise XapiError("SESSION_INVALID", "expired")
        elif rule.action == "kill_master":
            dead = backend.master_address()
            self.killed_hosts.add(dead)
            from .messages.pool import ha_failover
            ha_failover(backend, dead)  # with HA armed, a live member is master at once
            raise DropConnection()
        elif rule.action == "move_master":
            raise XapiError("HOST_IS_SLAVE", self._move_master(backend))
        return None

    def _move_master(self, backend) -> str:
        """Make the next live host (by address) the pool's master; its address."""
        store = backend.store
        with store.lock:
            pool = backend.pool_ref
            master = store.get("pool", pool)["master"]
            hosts = sorted((store.get("host", h)["address"], h) for h in store.all("host")
                           if store.get("host", h)["address"] not in self.killed_hosts)
            if len(hosts) < 2:
                raise XapiError("INTERNAL_ERROR", "move_master: no other live host in the pool")
            at = [h for _, h in hosts].index(master) if master in [h for _, h in hosts] else -1
            address, new = hosts[(at + 1) % len(hosts)]
            store.set("pool", pool, master=new)
            return address


def realistic_error(wire: str, args: list | tuple = ()) -> XapiError:
    """An error xapi could give for this call: the first one its datamodel documents for
    the message; for undocumented ones, what the layer under it reports (SM's
    ``SR_BACKEND_FAILURE_<n>`` for storage, ``XENAPI_PLUGIN_FAILURE`` for plugins);
    else ``INTERNAL_ERROR``.  Not ``HANDLE_INVALID`` for generated messages: that says the
    object is gone, and a client rightly believes it while the object is still there.
    Parameters that name an object get the call's references."""
    cls, _, name = wire.partition(".")
    msg = classes()[cls].messages[name]
    refs = [a for a in args if isinstance(a, str) and a.startswith("OpaqueRef:")]
    if msg.errors:
        code = msg.errors[0]
        params = [refs[0] if refs and (p.lower() in _CLASS_NAMES or p in ("ref", "handle"))
                  else "injected" for p in error_param_names(code)]
        return XapiError(code, *params)
    if cls in ("VDI", "SR", "PBD") and not msg.implicit:
        return sm_error("SRUnavailable", "injected")
    if wire == "host.call_plugin":
        return XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", "injected")
    return XapiError("INTERNAL_ERROR", f"injected into {wire}")


_CLASS_NAMES = {c.lower() for c in classes()}
