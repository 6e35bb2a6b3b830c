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


@api("pool", "enable_ha")
def enable_ha(call: Call, heartbeat_srs: list, configuration: dict) -> str:
    """Arm HA: from now on, a master that dies is replaced by a live member (``ha_failover``).

    As xapi_ha.ml's ``enable``: HA_IS_ENABLED when it is on, HOST_OFFLINE when a member is
    not live, CANNOT_CREATE_STATE_FILE when no heartbeat SR can hold the statefile (a shared
    SR; none named means any such SR). The statefile and the HA metadata VDI go into the
    first of them. (The xHA daemons, fencing and VM restart plans are not modelled.)
    """
    from .vdi import new_vdi
    store = call.store
    with store.lock:
        pool = call.backend.pool_ref
        if store.get("pool", pool)["ha_enabled"]:
            raise XapiError("HA_IS_ENABLED")
        for host in store.all("host"):
            metrics = store.get("host", host)["metrics"]
            if store.exists("host_metrics", metrics) and not store.get("host_metrics", metrics)["live"]:
                raise XapiError("HOST_OFFLINE", host)
        # a statefile needs a shared SR whose backend makes VDIs (not an ISO library)
        candidates = [sr for sr in (heartbeat_srs or store.all("SR"))
                      if store.exists("SR", sr) and store.get("SR", sr)["shared"]
                      and store.get("SR", sr)["type"] not in ("iso", "udev")
                      and store.get("SR", sr)["content_type"] != "iso"]
        if not candidates:
            raise XapiError("CANNOT_CREATE_STATE_FILE")
    statefile = new_vdi(call, candidates[0], "Statefile for HA", 4 << 20, "ha_statefile")
    new_vdi(call, candidates[0], "Metadata for HA", 256 << 20, "redo_log")
    with store.lock:
        store.set("pool", pool, ha_enabled=True, ha_statefiles=[statefile],
                  ha_configuration=dict(configuration))
    return ""


@api("pool", "disable_ha")
def disable_ha(call: Call) -> str:
    store = call.store
    with store.lock:
        pool = call.backend.pool_ref
        if not store.get("pool", pool)["ha_enabled"]:
            raise XapiError("HA_NOT_ENABLED")
        store.set("pool", pool, ha_enabled=False, ha_statefiles=[])
    return ""


def ha_failover(backend, dead_address: str) -> str | None:
    """The master at ``dead_address`` died: with HA armed, the first live member (by address)
    becomes master, as the xHA liveset's election makes one; the new master's address."""
    store = backend.store
    with store.lock:
        pool = backend.pool_ref
        if not store.get("pool", pool)["ha_enabled"]:
            return None
        killed = backend.faults.killed_hosts | {dead_address}
        live = sorted((store.get("host", h)["address"], h) for h in store.all("host")
                      if store.get("host", h)["address"] not in killed)
        if not live:
            return None
        store.set("pool", pool, master=live[0][1])
        return live[0][0]
