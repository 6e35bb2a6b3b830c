"""event.*: ``event.from`` with tokens and snapshots, the legacy register/next, inject."""
from __future__ import annotations

import time

from ..call import Call
from ..datamodel import class_by_lower, classes
from ..errors import XapiError
from ..generic import public_record
from ..registry import api
from ..values import Int32

BATCH_DELAY = 0.02  # xapi waits a moment to batch events before answering


def _token(gen: int) -> str:
    return f"{gen:020d},{gen:020d}"


def _parse_token(token: str) -> int:
    if token == "":
        return -1
    a, sep, _b = token.partition(",")
    try:
        return int(a)
    except ValueError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None


def _subscriptions(entries: list[str]) -> tuple[bool, set[str], set[tuple[str, str]]]:
    everything = False
    cls_subs: set[str] = set()
    obj_subs: set[tuple[str, str]] = set()
    for e in entries:
        if e == "*":
            everything = True
            continue
        name, sep, ref = e.partition("/")
        cls = class_by_lower(name)
        if cls is None:
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", e)
        if sep:
            obj_subs.add((cls, ref))
        else:
            cls_subs.add(cls)
    return everything, cls_subs, obj_subs


def _matches(subs, cls: str, ref: str) -> bool:
    everything, cls_subs, obj_subs = subs
    return everything or cls in cls_subs or (cls, ref) in obj_subs


def _event(store, cls: str, ref: str, gen: int, since: int, timestamp: str) -> dict | None:
    key = (cls, ref)
    if ref in store.tables[cls]:
        created = store.created_at.get(key, 0)
        op = "add" if created > since else "mod"
        snap = public_record(classes()[cls], store.tables[cls][ref])
        return {"id": str(gen), "timestamp": timestamp, "class": cls.lower(), "operation": op,
                "ref": ref, "snapshot": snap}
    created = store.deleted.get(key)
    if created is None or created > since:
        return None  # created and deleted after the token: not reported
    return {"id": str(gen), "timestamp": timestamp, "class": cls.lower(), "operation": "del",
            "ref": ref}


def _collect(store, subs, since: int) -> list[dict]:
    events = []
    if since < 0:
        for cls, table in store.tables.items():
            for ref in table:
                if _matches(subs, cls, ref):
                    events.append({"id": str(store.gen), "timestamp": "0.0", "class": cls.lower(),
                                   "operation": "add", "ref": ref,
                                   "snapshot": public_record(classes()[cls], table[ref])})
        return events
    for cls, ref, gen in store.changed_since(since):
        if _matches(subs, cls, ref):
            ev = _event(store, cls, ref, gen, since, "0.0")
            if ev is not None:
                events.append(ev)
    return events


@api("event", "from")
def event_from(call: Call, classes_: list[str], token: str, timeout: float) -> dict:
    subs = _subscriptions(classes_)
    since = _parse_token(token)
    store = call.store
    deadline = time.monotonic() + max(0.0, float(timeout))
    with store.lock:
        while True:
            if not call.backend.session_valid(call.session):
                raise XapiError("SESSION_INVALID", call.session)
            events = _collect(store, subs, since)
            if events:
                if since >= 0 and BATCH_DELAY:
                    store.cond.wait(BATCH_DELAY)
                    events = _collect(store, subs, since)
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            store.cond.wait(left)
        return {"events": events,
                "valid_ref_counts": {k: Int32(v) for k, v in store.counts().items()},
                "token": _token(store.gen)}


@api("event", "inject")
def inject(call: Call, cls: str, ref: str) -> str:
    store = call.store
    with store.lock:
        table = class_by_lower(cls)
        if table is None:
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", cls)
        store.get(table, ref)
        store.modified(table, ref)
        return _token(store.gen - 1)


@api("event", "get_current_id")
def get_current_id(call: Call) -> int:
    return call.store.gen


@api("event", "register")
def register(call: Call, classes_: list[str]) -> str:
    store = call.store
    with store.lock:
        _subscriptions(classes_)
        reg = call.backend.event_registrations.setdefault(
            call.session, {"classes": set(), "since": store.gen})
        reg["classes"].update(classes_)
    return ""


@api("event", "unregister")
def unregister(call: Call, classes_: list[str]) -> str:
    with call.store.lock:
        reg = call.backend.event_registrations.get(call.session)
        if reg:
            reg["classes"].difference_update(classes_)
    return ""


@api("event", "next")
def next_(call: Call) -> list[dict]:
    store = call.store
    with store.lock:
        while True:
            reg = call.backend.event_registrations.get(call.session)
            if not call.backend.session_valid(call.session):
                raise XapiError("SESSION_INVALID", call.session)
            if reg is None:
                raise XapiError("SESSION_NOT_REGISTERED", call.session)
            subs = _subscriptions(sorted(reg["classes"]))
            events = []
            for cls, ref, gen in store.changed_since(reg["since"]):
                if _matches(subs, cls, ref):
                    ev = _event(store, cls, ref, gen, reg["since"], f"{time.time():.6f}")
                    if ev is not None:
                        events.append(ev)
            if events:
                reg["since"] = store.gen
                return events
            reg["since"] = store.gen
            store.cond.wait(30.0)
