"""pool.*: the messages of a pool that a compute driver meets."""
from __future__ import annotations

from ..call import Call
from ..errors import XapiError
from ..registry import api


@api("pool", "get_license_state")
def get_license_state(call: Call, pool: str) -> dict:
    call.store.get("pool", pool)
    return {"edition": "xenserver-premium", "expiry": "never"}


@api("pool", "designate_new_master")
def designate_new_master(call: Call, host: str) -> str:
    """Make ``host`` the master; the old master then answers HOST_IS_SLAVE.

    As xapi_pool.ml does: naming the current master is a no-op, and the new
    master must be live.  (HA and the two-phase commit with every member are
    not modelled: all simulated members are always reachable.)
    """
    store = call.store
    with store.lock:
        rec = store.get("host", host)
        pool = call.backend.pool_ref
        if store.get("pool", pool)["master"] == host:
            return ""
        if rec["address"] in call.backend.faults.killed_hosts:
            raise XapiError("HOST_OFFLINE", host)
        store.set("pool", pool, master=host)
    return ""
