"""Hand-written message implementations, one module per XAPI class."""
from __future__ import annotations

import importlib

MODULES = ("session", "task", "event", "vm", "vm_copy", "vm_xva", "vdi", "vbd", "vif", "host", "pool",
           "sr", "pbd", "message", "migrate", "pool_join", "network",
           "vtpm")


def load_all() -> None:
    for m in MODULES:
        importlib.import_module(f"{__name__}.{m}")
