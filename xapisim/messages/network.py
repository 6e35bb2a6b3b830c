"""network.create: the bridge name rules of xapi's Xapi_network.create.

An empty ``bridge`` gets the first free ``xapi<N>`` (a counter that only
grows, as xapi's does); a name given by an ordinary session must be at most
15 characters and must not start with a prefix xapi keeps for itself
(``xen``, ``xapi``, ``vif``, ``tap``, ``eth``): else ``INVALID_VALUE``.  Pool-
internal sessions (a pool member, a VM import) are trusted.  A bridge already
used by another network is ``BRIDGE_NAME_EXISTS``.  An MTU of 0 or less
becomes 1500.  (ocaml/xapi/xapi_network.ml: ``create``, ``choose_bridge_name``,
``bridge_blacklist``.)
"""
from __future__ import annotations

import itertools

from ..call import Call
from ..datamodel import classes
from ..errors import XapiError
from ..generic import constructor_values
from ..registry import api

BRIDGE_BLACKLIST = ("xen", "xapi", "vif", "tap", "eth")


def _internal_session(call: Call) -> bool:
    store = call.store
    if not store.exists("session", call.session):
        return True  # xapi: a session it cannot look up counts as internal
    return bool(store.get("session", call.session).get("pool"))


@api("network", "create")
def create(call: Call, struct: dict) -> str:
    store = call.store
    values = constructor_values(classes()["network"], struct)
    with store.lock:
        bridges = {store.get("network", n)["bridge"] for n in store.all("network")}
        bridge = values.get("bridge", "")
        if bridge == "":
            # xapi's counter lives in its process: one per pool master here
            counter = call.backend.__dict__.setdefault("_bridge_counter", itertools.count())
            bridge = next(name for name in (f"xapi{n}" for n in counter) if name not in bridges)
        else:
            if not _internal_session(call) and (
                    len(bridge) > 15 or bridge.startswith(BRIDGE_BLACKLIST)):
                raise XapiError("INVALID_VALUE", "bridge", bridge)
            if bridge in bridges:
                raise XapiError("BRIDGE_NAME_EXISTS", bridge)
        values["bridge"] = bridge
        if int(values.get("MTU", 0)) <= 0:
            values["MTU"] = 1500
        ref = store.create("network", values)
        call.backend.refresh("network", ref)
        return ref
