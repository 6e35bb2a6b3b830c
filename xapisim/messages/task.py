"""task.*: create, cancel, destroy, and the internal setters."""
from __future__ import annotations

from .. import tasks
from ..call import Call
from ..errors import XapiError
from ..registry import api


@api("task", "create")
def create(call: Call, label: str, description: str) -> str:
    return tasks.create(call, label, description)


@api("task", "destroy")
def destroy(call: Call, task: str) -> str:
    tasks.destroy(call, task)
    return ""


@api("task", "cancel")
def cancel(call: Call, task: str) -> str:
    store = call.store
    with store.lock:
        rec = store.get("task", task)
        if "cancel" not in rec["allowed_operations"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "task cannot be cancelled")
        rec["current_operations"][call.task if call.task != "OpaqueRef:NULL" else task] = "cancel"
        store.set("task", task, status="cancelling")
        store.modified("task", task)
    return ""


@api("task", "set_status")
def set_status(call: Call, task: str, value: str) -> str:
    call.store.set("task", task, status=value)
    return ""


@api("task", "set_progress")
def set_progress(call: Call, task: str, value: float) -> str:
    call.store.set("task", task, progress=value)
    return ""


@api("task", "set_result")
def set_result(call: Call, task: str, value: str) -> str:
    call.store.set("task", task, result=value)
    return ""


@api("task", "set_error_info")
def set_error_info(call: Call, task: str, value: list) -> str:
    call.store.set("task", task, error_info=value)
    return ""
