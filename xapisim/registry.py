"""The table of hand-written message implementations.

Modules in ``xapisim.messages`` register functions with ``@api("VM", "start")``.
A function receives a ``Call`` and the message's parameters after the session
(already converted to their datamodel types) and returns the result.
"""
from __future__ import annotations

from collections.abc import Callable

HANDLERS: dict[tuple[str, str], Callable] = {}
# messages that report progress and may be cancelled while running async
CANCELLABLE: set[tuple[str, str]] = set()


def api(cls: str, name: str, cancellable: bool = False) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        HANDLERS[(cls, name)] = fn
        if cancellable:
            CANCELLABLE.add((cls, name))
        return fn
    return deco
