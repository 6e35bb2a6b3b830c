"""Small messages of other classes (VM_metrics, message, console)."""
from __future__ import annotations

from ..call import Call
from ..registry import api
from ..values import now


@api("message", "create")
def message_create(call: Call, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    return call.store.create("message", {"name": name, "priority": priority, "cls": cls,
                                         "obj_uuid": obj_uuid, "body": body, "timestamp": now()})
