"""Saving and loading a backend's database so state survives a restart.

The store is written as JSON to ``<state-dir>/db.json`` for the first pool
and ``<state-dir>/pool-<uuid>.json`` for the others; datetimes keep their type
through a small tag.  A write goes to a temporary file that is synced before
it replaces the database, and the directory is synced after, so a simulator
killed at any moment (``kill -9``, power loss) leaves the last complete
database, never a torn one.  The simulator saves while it runs, as xapi
flushes its database, and again when it stops.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from .values import XDateTime


def _enc(o):
    if isinstance(o, XDateTime):
        return {"__dt__": str(o)}
    raise TypeError(type(o))


def _fix(v):
    if isinstance(v, dict):
        if set(v) == {"__dt__"}:
            return XDateTime(v["__dt__"])
        return {k: _fix(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_fix(x) for x in v]
    return v


def _dt_aware(v):
    if isinstance(v, XDateTime):
        return {"__dt__": str(v)}
    if isinstance(v, dict):
        return {k: _dt_aware(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dt_aware(x) for x in v]
    return v


_writing = threading.Lock()  # one writer at a time: the flusher and stop() may meet


def save(backend) -> Path:
    """Write the backend's database durably; return its path."""
    store = backend.store
    with store.lock:
        data = {
            "gen": store.gen,
            "tables": _dt_aware(store.tables),
            "private": {r: p for r, p in store.private.items()
                        if all(isinstance(x, (str, int, float, bool)) for x in p.values())},
            "created_at": [[c, r, g] for (c, r), g in store.created_at.items()],
            "domid": backend._domid,
        }
    text = json.dumps(data, default=_enc).encode()
    path = backend.state_dir / backend.db_name
    tmp = path.with_suffix(".tmp")
    with _writing:
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    backend.saved_gen = data["gen"]
    return path


def load(backend) -> bool:
    path = backend.state_dir / backend.db_name
    if not path.exists():
        return False
    data = json.loads(path.read_text())
    store = backend.store
    with store.lock:
        store.gen = data["gen"]
        for cls, table in data["tables"].items():
            if cls in store.tables:
                store.tables[cls] = _fix(table)
        store.private = {r: {} for t in store.tables.values() for r in t}
        store.private.update(data["private"])
        store.by_uuid = {rec["uuid"]: (cls, ref) for cls, t in store.tables.items()
                         for ref, rec in t.items() if "uuid" in rec}
        store.created_at = {(c, r): g for c, r, g in data["created_at"]}
        store.changes = {(c, r): g for c, r, g in sorted(
            ((c, r, g) for (c, r), g in store.created_at.items()), key=lambda x: x[2])}
        backend._domid = data.get("domid", 0)
    return True
