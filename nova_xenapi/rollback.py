"""Undo what a multi-step operation made when a later step fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class Rollback:
    """Collects undo actions; ``with`` runs them newest first if the block raises.

    A failing undo action is logged and the others still run, so one stuck
    object does not leave the rest behind; the original error is re-raised.
    """

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[..., Any], tuple]] = []

    def add(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        self._undo.append((what, fn, args))

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        for what, fn, args in reversed(self._undo):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - keep undoing the rest
                LOG.exception("Could not undo %s after a failure", what)
        return False
