"""The simulator's database: objects by class and ref, with event generations.

Every change bumps a global generation and records the object as changed at
that generation; ``event.from`` reads those changes.  One re-entrant lock
guards everything (as xapi's DB lock does); ``cond`` wakes blocked
``event.from`` and ``event.next`` callers.  Records hold every public field;
per-object simulator state that XAPI does not publish lives in ``private``.
"""
from __future__ import annotations

import copy
import threading
import uuid as _uuid
from collections.abc import Iterator

from .datamodel import NULL_REF, RELATIONS, classes
from .errors import XapiError, handle_invalid


def new_ref() -> str:
    return f"OpaqueRef:{_uuid.uuid4()}"


def new_uuid() -> str:
    return str(_uuid.uuid4())


_LINKS: dict[str, list[tuple[str, str, str]]] = {}
for _c, _f, _oc, _of in RELATIONS:
    _LINKS.setdefault(_c, []).append((_f, _oc, _of))


class Store:
    """Objects of every class, generation-stamped for events."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.tables: dict[str, dict[str, dict]] = {c: {} for c in classes()}
        self.private: dict[str, dict] = {}
        self.by_uuid: dict[str, tuple[str, str]] = {}
        self.gen = 0
        # (cls, ref) -> generation of last change, kept in generation order
        self.changes: dict[tuple[str, str], int] = {}
        self.created_at: dict[tuple[str, str], int] = {}
        self.deleted: dict[tuple[str, str], int] = {}  # tombstones: key -> created gen

    # -- generations -------------------------------------------------------
    def _touch(self, cls: str, ref: str) -> None:
        self.gen += 1
        key = (cls, ref)
        self.changes.pop(key, None)
        self.changes[key] = self.gen
        self.cond.notify_all()

    def changed_since(self, gen: int) -> Iterator[tuple[str, str, int]]:
        """Yield (cls, ref, gen) of objects changed after ``gen``, oldest first."""
        out = []
        for key, g in reversed(self.changes.items()):
            if g <= gen:
                break
            out.append((key[0], key[1], g))
        return reversed(out)

    # -- objects -----------------------------------------------------------
    def create(self, cls: str, values: dict, ref: str | None = None) -> str:
        """Create an object with every field at its default, overridden by ``values``."""
        cdef = classes()[cls]
        ref = ref or new_ref()
        with self.lock:
            rec = {name: f.initial() for name, f in cdef.fields.items() if not f.removed}
            if "uuid" in rec:
                rec["uuid"] = new_uuid()
            for k, v in values.items():
                rec[k] = v
            self.tables[cls][ref] = rec
            self.private[ref] = {}
            if "uuid" in rec:
                self.by_uuid[rec["uuid"]] = (cls, ref)
            self._touch(cls, ref)
            self.created_at[(cls, ref)] = self.gen
            for fname, ocls, ofield in _LINKS.get(cls, ()):
                self.add_to_set(ocls, rec.get(fname, NULL_REF), ofield, ref)
            return ref

    def destroy(self, cls: str, ref: str) -> None:
        with self.lock:
            rec = self.tables[cls].pop(ref, None)
            if rec is None:
                raise handle_invalid(cls, ref)
            self.private.pop(ref, None)
            if "uuid" in rec:
                self.by_uuid.pop(rec["uuid"], None)
            for fname, ocls, ofield in _LINKS.get(cls, ()):
                self.remove_from_set(ocls, rec.get(fname, NULL_REF), ofield, ref)
            created = self.created_at.pop((cls, ref), 0)
            self.deleted[(cls, ref)] = created
            self._touch(cls, ref)

    def change_uuid(self, cls: str, ref: str, uuid: str) -> None:
        """Give an object another uuid (a host keeps its own when it changes pools)."""
        with self.lock:
            rec = self.get(cls, ref)
            self.by_uuid.pop(rec["uuid"], None)
            rec["uuid"] = uuid
            self.by_uuid[uuid] = (cls, ref)
            self._touch(cls, ref)

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables[cls]

    def get(self, cls: str, ref: str) -> dict:
        """The live record (callers hold the lock while they mutate it)."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise handle_invalid(cls, ref) from None

    def field(self, cls: str, ref: str, name: str):
        return self.get(cls, ref)[name]

    def set(self, cls: str, ref: str, **values) -> None:
        with self.lock:
            rec = self.get(cls, ref)
            changed = False
            links = {f: (oc, of) for f, oc, of in _LINKS.get(cls, ())}
            for k, v in values.items():
                if rec.get(k) != v:
                    if k in links:
                        oc, of = links[k]
                        self.remove_from_set(oc, rec.get(k, NULL_REF), of, ref)
                        self.add_to_set(oc, v, of, ref)
                    rec[k] = v
                    changed = True
            if changed:
                self._touch(cls, ref)

    def modified(self, cls: str, ref: str) -> None:
        """Record an in-place change of a record (for event.from)."""
        with self.lock:
            self._touch(cls, ref)

    def snapshot(self, cls: str, ref: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.get(cls, ref))

    def all(self, cls: str) -> list[str]:
        with self.lock:
            return list(self.tables[cls])

    def records(self, cls: str) -> dict[str, dict]:
        with self.lock:
            return {r: copy.deepcopy(v) for r, v in self.tables[cls].items()}

    def find(self, cls: str, **match) -> list[str]:
        with self.lock:
            return [r for r, rec in self.tables[cls].items()
                    if all(rec.get(k) == v for k, v in match.items())]

    def by_uuid_of(self, cls: str, uuid: str) -> str:
        with self.lock:
            hit = self.by_uuid.get(uuid)
            if hit is None or hit[0] != cls:
                raise XapiError("UUID_INVALID", cls, uuid)
            return hit[1]

    def resolve(self, ref_or_uuid: str) -> tuple[str, str] | None:
        """Find the class of a ref or uuid, if it exists."""
        with self.lock:
            if ref_or_uuid in self.by_uuid:
                return self.by_uuid[ref_or_uuid]
            for cls, table in self.tables.items():
                if ref_or_uuid in table:
                    return cls, ref_or_uuid
            return None

    # -- set/map fields that link objects ----------------------------------
    def add_to_set(self, cls: str, ref: str, name: str, value) -> None:
        if ref == NULL_REF or ref not in self.tables[cls]:
            return
        lst = self.tables[cls][ref][name]
        if value not in lst:
            lst.append(value)
            self._touch(cls, ref)

    def remove_from_set(self, cls: str, ref: str, name: str, value) -> None:
        if ref == NULL_REF or ref not in self.tables[cls]:
            return
        lst = self.tables[cls][ref][name]
        if value in lst:
            lst.remove(value)
            self._touch(cls, ref)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {c.lower(): len(t) for c, t in self.tables.items()}
