"""Tasks: what ``Async.*`` calls and HTTP handlers report into.

A task is created ``pending`` with progress 0; when its work ends it becomes
``success`` with ``result`` holding the value as an XML-RPC fragment, or
``failure`` with ``error_info``, or ``cancelled`` if it noticed a cancel.
Finished tasks are garbage collected as xapi does (65 min after completion,
pending ones after 24 h, and the oldest finished beyond 200).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .call import Call
from .datamodel import NULL_REF
from .errors import XapiError
from .values import from_epoch, now
from .wire.xmlrpc import encode_value

COMPLETED_TASK_TIMEOUT = 3900.0
PENDING_TASK_TIMEOUT = 86400.0
MAX_TASKS = 200


def create(call: Call, label: str, description: str = "", session: str | None = None,
           destroy_when_done: bool = False) -> str:
    """A pending task; ``destroy_when_done`` for tasks a handler makes for itself."""
    store = call.store
    with store.lock:
        ref = store.create("task", {
            "name_label": label, "name_description": description, "status": "pending",
            "progress": 0.0, "created": now(), "finished": from_epoch(0),
            "resident_on": call.host, "allowed_operations": [],
        })
        sess = session or call.session
        if sess != NULL_REF and store.exists("session", sess):
            store.add_to_set("session", sess, "tasks", ref)
            store.private[ref]["session"] = sess
        store.private[ref]["created"] = time.monotonic()
        store.private[ref]["destroy_when_done"] = destroy_when_done
        return ref


def finish(call: Call, task: str, result=None, error: XapiError | None = None) -> None:
    store = call.store
    with store.lock:
        if not store.exists("task", task):
            return
        rec = store.get("task", task)
        if rec["status"] not in ("pending", "cancelling"):
            return
        values = {"progress": 1.0, "finished": now(), "current_operations": {},
                  "allowed_operations": []}
        if error is None:
            values.update(status="success", result=encode_value("" if result is None else result))
        elif error.code == "TASK_CANCELLED":
            values.update(status="cancelled", error_info=error.description)
        else:
            values.update(status="failure", error_info=error.description)
        store.set("task", task, **values)
        store.private[task]["finished"] = time.monotonic()
        if store.private[task].get("destroy_when_done"):
            _destroy(store, task)


def _destroy(store, task: str) -> None:
    sess = store.private.get(task, {}).get("session")
    if sess:
        store.remove_from_set("session", sess, "tasks", task)
    store.destroy("task", task)


def destroy(call: Call, task: str) -> None:
    """task.destroy: finished tasks go at once, running ones when they end."""
    store = call.store
    with store.lock:
        rec = store.get("task", task)
        if rec["status"] in ("pending", "cancelling"):
            store.private[task]["destroy_when_done"] = True
        else:
            _destroy(store, task)


def run_async(call: Call, wire_name: str, work: Callable[[Call], object]) -> str:
    """Start ``work`` in a thread under a new task and return the task ref."""
    from .registry import CANCELLABLE
    task = create(call, wire_name)
    cls, _, msg = call.wire_name.partition(".")
    if (cls, msg) in CANCELLABLE:
        call.store.set("task", task, allowed_operations=["cancel"])
    call.task = task

    def body() -> None:
        try:
            result = work(call)
        except XapiError as e:
            finish(call, task, error=e)
        except Exception as e:  # noqa: BLE001 - becomes INTERNAL_ERROR like xapi
            finish(call, task, error=XapiError("INTERNAL_ERROR", str(e)))
        else:
            finish(call, task, result=result)

    threading.Thread(target=body, name=f"task-{wire_name}", daemon=True).start()
    return task


def gc(store) -> int:
    """Destroy expired tasks; return how many went."""
    t = time.monotonic()
    gone = 0
    with store.lock:
        finished = []
        for ref, rec in list(store.tables["task"].items()):
            priv = store.private.get(ref, {})
            if rec["status"] in ("pending", "cancelling"):
                if t - priv.get("created", t) > PENDING_TASK_TIMEOUT:
                    _destroy(store, ref)
                    gone += 1
            else:
                done = priv.get("finished", t)
                if t - done > COMPLETED_TASK_TIMEOUT:
                    _destroy(store, ref)
                    gone += 1
                else:
                    finished.append((done, ref))
        excess = len(store.tables["task"]) - MAX_TASKS
        for _, ref in sorted(finished)[:max(0, excess)]:
            _destroy(store, ref)
            gone += 1
    return gone
