"""The messages xapi generates for every class: getters, setters, records, queries.

``get_record``, ``get_all``, ``get_all_records``, ``get_all_records_where``,
``get_all_where``, ``get_by_uuid``, ``get_by_name_label``, ``get_<field>``,
``set_<field>`` (RW fields), ``add_to_<map>``/``remove_from_<map>``,
``add_<set>``/``remove_<set>``, and the generated ``create``/``destroy``.
"""
from __future__ import annotations

import copy
import functools

from .call import Call
from .datamodel import ClassDef, Message, classes
from .errors import XapiError
from .query import compile_query
from .values import Int32, XDateTime, coerce

_ATOMIC = frozenset({str, int, float, bool, type(None), XDateTime, Int32})
_SCALAR_KINDS = frozenset({"string", "int", "float", "bool", "datetime", "ref", "enum"})


def clone(v):
    """A deep copy of a field's value; the types records hold are copied without ``copy``'s
    memo bookkeeping, which dominated every ``get_record``."""
    t = type(v)
    if t in _ATOMIC:
        return v
    if t is dict:
        return {k: x if type(x) in _ATOMIC else clone(x) for k, x in v.items()}
    if t is list:
        return [x if type(x) in _ATOMIC else clone(x) for x in v]
    return copy.deepcopy(v)


@functools.cache
def _layout(cls: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """A class's public field names, and those whose values may be mutable (any kind but
    the scalar ones: sets, maps, records, opaque values)."""
    fields = classes()[cls].fields
    return frozenset(fields), tuple(n for n, f in fields.items() if f.type.kind not in _SCALAR_KINDS)


def public_record(cdef: ClassDef, rec: dict) -> dict:
    """A copy of a record's public fields, sharing nothing mutable with the store."""
    names, containers = _layout(cdef.name)
    out = dict(rec)
    for k in out.keys() - names:
        del out[k]
    for k in containers:
        v = out.get(k)
        if v is not None and type(v) not in _ATOMIC:
            out[k] = clone(v)
    return out


def run(call: Call, cdef: ClassDef, msg: Message, args: list):
    """Run a generated message; ``args`` exclude the session."""
    store = call.store
    cls = cdef.name
    name = msg.name
    with store.lock:
        if name == "get_record":
            return public_record(cdef, store.get(cls, args[0]))
        if name == "get_all":
            return store.all(cls)
        if name == "get_all_records":
            return {r: public_record(cdef, rec) for r, rec in store.tables[cls].items()}
        if name in ("get_all_records_where", "get_all_where"):
            pred = compile_query(args[0])
            hits = {r: rec for r, rec in store.tables[cls].items() if pred(rec)}
            if name == "get_all_where":
                return list(hits)
            return {r: public_record(cdef, rec) for r, rec in hits.items()}
        if name == "get_by_uuid":
            return store.by_uuid_of(cls, args[0])
        if name == "get_by_name_label":
            return [r for r, rec in store.tables[cls].items() if rec.get("name_label") == args[0]]
        if name == "destroy":
            store.get(cls, args[0])
            store.destroy(cls, args[0])
            return ""
        if name == "create":
            return create(call, cdef, args[0])
        if name.startswith("get_"):
            fname = name[4:]
            if fname in cdef.fields:
                return clone(store.get(cls, args[0])[fname])
        if name.startswith("set_"):
            fname = name[4:]
            if fname in cdef.fields:
                store.get(cls, args[0])
                store.set(cls, args[0], **{fname: args[1]})
                return ""
        if name.startswith("add_to_"):
            fname = name[7:]
            rec = store.get(cls, args[0])
            if args[1] in rec[fname]:
                raise XapiError("MAP_DUPLICATE_KEY", cls, fname, rec.get("uuid", args[0]), args[1])
            rec[fname][args[1]] = args[2]
            store.modified(cls, args[0])
            return ""
        if name.startswith("remove_from_"):
            fname = name[12:]
            rec = store.get(cls, args[0])
            if rec[fname].pop(args[1], None) is not None:
                store.modified(cls, args[0])
            return ""
        if name.startswith("add_"):
            fname = name[4:]
            rec = store.get(cls, args[0])
            if args[1] not in rec[fname]:
                rec[fname].append(args[1])
                store.modified(cls, args[0])
            return ""
        if name.startswith("remove_"):
            fname = name[7:]
            rec = store.get(cls, args[0])
            if args[1] in rec[fname]:
                rec[fname].remove(args[1])
                store.modified(cls, args[0])
            return ""
    raise XapiError("NOT_IMPLEMENTED", msg.wire_name)


def constructor_values(cdef: ClassDef, struct: dict) -> dict:
    """Check a ``create`` struct as xapi's unmarshaller does; return typed values."""
    values = {}
    for f in cdef.constructor_fields():
        if f.name in struct:
            values[f.name] = coerce(f.type, struct[f.name])
        elif not f.has_default:
            raise XapiError("INTERNAL_ERROR", f'Dispatcher_FieldNotFound("{f.name}")')
    return values


def create(call: Call, cdef: ClassDef, struct: dict) -> str:
    values = constructor_values(cdef, struct)
    # every ref a constructor names must exist (xapi checks them on insert)
    for fname, v in values.items():
        t = cdef.fields[fname].type
        if t.kind == "ref" and v != "OpaqueRef:NULL" and t.name in call.store.tables:
            call.store.get(t.name, v)
    return call.store.create(cdef.name, values)
