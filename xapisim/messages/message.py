"""The ``message`` class: alerts about objects, kept outside the object database by xapi.

Follows ``xapi_message.ml``: ``create`` needs an existing object of the
named class (``UUID_INVALID [cls, uuid]``), listings come newest first,
``get_since`` and ``get`` filter on the timestamp, ``get_by_uuid`` of an
unknown uuid is ``UUID_INVALID [message, uuid]``, and
``get_all_records_where`` evaluates xapi's query language over the record.
Messages appear in ``event.from`` as class ``message``, as in xapi.
"""
from __future__ import annotations

from ..call import Call
from ..errors import XapiError
from ..query import compile_query
from ..registry import api
from ..values import now

# cls enum value -> the class whose uuid it names (xapi_message.ml check_uuid)
_CLASSES = {"VM": "VM", "Host": "host", "SR": "SR", "Pool": "pool", "VMPP": "VMPP",
            "VMSS": "VMSS", "PVS_proxy": "PVS_proxy", "VDI": "VDI", "Certificate": "Certificate"}


def _exists(store, cls: str, uuid: str) -> bool:
    hit = store.by_uuid.get(uuid)
    return hit is not None and hit[0] == _CLASSES.get(cls)


def _records(store, keep=lambda rec: True) -> dict:
    with store.lock:
        rows = [(r, dict(v)) for r, v in store.tables["message"].items() if keep(v)]
    rows.sort(key=lambda rv: rv[1]["timestamp"], reverse=True)
    return dict(rows)


@api("message", "create")
def create(call: Call, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    store = call.store
    with store.lock:
        if not _exists(store, cls, obj_uuid):
            raise XapiError("UUID_INVALID", cls, obj_uuid)
        return store.create("message", {"name": name, "priority": priority, "cls": cls,
                                        "obj_uuid": obj_uuid, "body": body, "timestamp": now()})


@api("message", "get_all")
def get_all(call: Call) -> list[str]:
    return list(_records(call.store))


@api("message", "get_all_records")
def get_all_records(call: Call) -> dict:
    return _records(call.store)


@api("message", "get_all_records_where")
def get_all_records_where(call: Call, expr: str) -> dict:
    return _records(call.store, compile_query(expr))


@api("message", "get_record")
def get_record(call: Call, self: str) -> dict:
    return dict(call.store.get("message", self))


@api("message", "get_by_uuid")
def get_by_uuid(call: Call, uuid: str) -> str:
    hit = call.store.by_uuid.get(uuid)
    if hit is None or hit[0] != "message":
        raise XapiError("UUID_INVALID", "message", uuid)
    return hit[1]


@api("message", "get_since")
def get_since(call: Call, since: str) -> dict:
    return _records(call.store, lambda rec: rec["timestamp"] > since)


@api("message", "get")
def get(call: Call, cls: str, obj_uuid: str, since: str) -> dict:
    store = call.store
    if not _exists(store, cls, obj_uuid):
        raise XapiError("UUID_INVALID")
    return _records(store, lambda rec: rec["cls"] == cls and rec["obj_uuid"] == obj_uuid
                    and rec["timestamp"] > since)


@api("message", "destroy")
def destroy(call: Call, self: str) -> str:
    store = call.store
    with store.lock:
        store.get("message", self)
        store.destroy("message", self)
    return ""


@api("message", "destroy_many")
def destroy_many(call: Call, messages: list[str]) -> str:
    store = call.store
    with store.lock:
        for m in messages:
            if store.exists("message", m):
                store.destroy("message", m)
    return ""
