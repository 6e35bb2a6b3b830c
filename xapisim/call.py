"""The context one API call runs in: which pool, which host, which session and task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .datamodel import NULL_REF
from .errors import XapiError

if TYPE_CHECKING:
    from .backend import Backend


@dataclass
class Call:
    backend: Backend
    host: str  # ref of the host whose listener took the call
    session: str = NULL_REF
    task: str = NULL_REF
    wire_name: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def store(self):
        return self.backend.store

    def progress(self, fraction: float) -> None:
        """Report progress into the task, and stop if it was cancelled."""
        if self.task == NULL_REF:
            return
        store = self.store
        with store.lock:
            if not store.exists("task", self.task):
                return
            rec = store.get("task", self.task)
            if "cancel" in rec["current_operations"].values():
                raise XapiError("TASK_CANCELLED", self.task)
            store.set("task", self.task, progress=max(0.0, min(1.0, fraction)))
