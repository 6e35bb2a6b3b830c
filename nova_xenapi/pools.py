"""XAPI pools made from Nova host aggregates, as the old driver's pool code made them.

Nova 34 calls no driver hook when an aggregate changes, so each nova-compute
reconciles its own host with the aggregates it is in: a thread of the driver
every ``[xenserver] pool_reconcile_interval`` seconds (and ``reconcile`` for
a direct call).  We chose a reconciler over Nova's versioned notifications
or a CLI because it needs no extra service or message queue setup, it
catches up after a restart or a missed change, and the host that must act
(the joining host, or the master for an eject) is the one running it.

An aggregate takes part when its metadata has ``hypervisor_pool=true``.  Its
other metadata, as the old driver kept it:

* ``operational_state``: ``created`` (by the operator), then ``changing``
  while a host joins, ``active``, or ``error`` (the reason in
  ``operational_error``);
* ``master_compute``: the compute host whose XAPI host is the pool master,
  and ``master_address``: that XAPI host's address;
* ``<compute host>``: the XAPI host uuid of each member compute.

The aggregate's first host becomes the master.  Another host joins with
``pool.join`` when nothing but this compute VM runs on it (xapi refuses a
join with other running VMs).  When a host leaves the aggregate, the
master's compute ejects its XAPI host with ``pool.eject``; as on a real
host, the ejected host comes back as a fresh pool.  Its nova-compute finds
it there by itself: each round first reads its own host, and a session
whose host has left the pool it talked to logs in again at its configured
URL (``session.py``).  With ``independent_compute`` a pool join is refused,
as the old driver refused it.
"""

from __future__ import annotations

import threading
from typing import Any

from nova import context as nova_context
from nova import objects
from oslo_log import log as logging

from nova_xenapi import this_vm
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession

LOG = logging.getLogger(__name__)
RESERVED = {"hypervisor_pool", "operational_state", "operational_error", "master_compute",
            "master_address", "availability_zone"}


def _pool_master(session: XenAPISession) -> str:
    return session.call_xenapi("pool.get_master", session.call_xenapi("pool.get_all")[0])


def _set_state(agg: Any, state: str, **more: str) -> None:
    agg.update_metadata({"operational_state": state, **more})


class PoolReconciler:
    """Brings this compute's XAPI host into (or the master's pool out of) aggregate pools."""

    def __init__(self, session: XenAPISession, compute_host: str, username: str, password: str,
                 independent_compute: bool) -> None:
        self._session = session
        self._me = compute_host
        self._username = username
        self._password = password
        self._independent = independent_compute
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reconcile(nova_context.get_admin_context())
                except Exception:  # noqa: BLE001 - the next round tries again
                    LOG.exception("pool reconciliation failed")
        self._thread = threading.Thread(target=loop, name="xenapi-pools", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reconcile(self, context: Any) -> None:
        try:  # a host ejected from its pool: the session finds it in its new pool
            self._session.call_xenapi("host.get_uuid", self._session.host_ref)
        except XenAPIError as exc:
            if exc.code != "HANDLE_INVALID":
                raise
        for agg in objects.AggregateList.get_by_host(context, self._me):
            if agg.metadata.get("hypervisor_pool") != "true":
                continue
            master = agg.metadata.get("master_compute")
            if master is None:
                if agg.hosts and agg.hosts[0] == self._me:
                    self._become_master(agg)
            elif master == self._me:
                self._eject_departed(agg)
            elif self._me not in agg.metadata:
                self._join(agg)

    def _become_master(self, agg: Any) -> None:
        s = self._session
        if _pool_master(s) != s.host_ref or len(s.call_xenapi("host.get_all")) > 1:
            return _set_state(agg, "error", operational_error=(
                f"{self._me}'s XAPI host is already in a pool of several hosts"))
        agg.update_metadata({"master_compute": self._me, self._me: s.host_uuid,
                             "master_address": s.call_xenapi("host.get_address", s.host_ref),
                             "operational_state": "active"})
        LOG.info("aggregate %s: this host's XAPI host is the pool master", agg.name)

    def _join(self, agg: Any) -> None:
        s = self._session
        if self._independent:
            return _set_state(agg, "error", operational_error=(
                "independent_compute cannot join its host to a pool"))
        others = [v for v in s.call_xenapi("VM.get_all_records").values()
                  if v["resident_on"] == s.host_ref and not v["is_control_domain"]
                  and v["power_state"] != "Halted" and v["uuid"] != this_vm.own_uuid()]
        if others:
            return _set_state(agg, "error", operational_error=(
                f"{self._me}'s XAPI host runs {len(others)} VM(s) besides nova-compute; "
                "a host joins a pool only with nothing else running"))
        _set_state(agg, "changing")
        try:
            s.call_xenapi("pool.join", agg.metadata["master_address"], self._username,
                          self._password)
            s.refresh_host()
        except (XenAPIError, HostConnectionError) as exc:
            LOG.warning("aggregate %s: %s could not join the pool: %s", agg.name, self._me, exc)
            return _set_state(agg, "error", operational_error=f"pool.join failed: {exc}")
        agg.update_metadata({self._me: s.host_uuid, "operational_state": "active"})
        LOG.info("aggregate %s: joined the pool of %s", agg.name, agg.metadata["master_address"])

    def _eject_departed(self, agg: Any) -> None:
        s = self._session
        for compute, uuid in list(agg.metadata.items()):
            if compute in RESERVED or compute == self._me or compute in agg.hosts:
                continue
            try:
                host = s.call_xenapi("host.get_by_uuid", uuid)
                s.call_xenapi("pool.eject", host)
            except XenAPIError as exc:
                if exc.code != "UUID_INVALID":  # already gone from the pool
                    LOG.warning("aggregate %s: could not eject %s: %s", agg.name, compute, exc)
                    _set_state(agg, "error", operational_error=f"pool.eject failed: {exc}")
                    continue
            agg.update_metadata({compute: None})
            LOG.info("aggregate %s: ejected %s's XAPI host from the pool", agg.name, compute)
