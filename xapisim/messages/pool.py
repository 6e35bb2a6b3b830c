"""pool.*: the messages of a pool that a compute driver meets."""
from __future__ import annotations

from ..call import Call
from ..registry import api


@api("pool", "get_license_state")
def get_license_state(call: Call, pool: str) -> dict:
    call.store.get("pool", pool)
    return {"edition": "xenserver-premium", "expiry": "never"}
