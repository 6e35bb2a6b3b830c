"""Evacuate: bring a server whose host failed back up on this host of the same pool.

Nova calls ``rebuild(evacuate=True)`` on the destination once the source's
compute service is down.  With the server's disks on storage this host sees
(a shared SR of the pool), its VM record is still in the pool, shown Running
on the dead host: ``VM.power_state_reset`` (which xapi refuses with
HOST_IS_LIVE while that host is alive) marks it Halted, and it starts here
with ``VM.start_on``, its disks and VIFs as they were.  Disks on the failed
host's own storage cannot be reached from here, and a host of another pool
does not see the VM at all: both are refused with a message saying so, and
nothing is made.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from oslo_log import log as logging

from nova_xenapi import vm
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession

LOG = logging.getLogger(__name__)
START_TIMEOUT = 600


class EvacuationRefused(exception.NovaException):
    msg_fmt = "Cannot evacuate to this host: %(reason)s"


def disks_reachable(session: XenAPISession, instance: Any) -> bool:
    ref = vm.lookup(session, instance.name)
    return ref is not None and vm.disks_seen_from(session, ref, session.host_ref)


def check_possible(session: XenAPISession, instance: Any) -> str:
    """The instance's VM, if this host can take it over; EvacuationRefused saying why not."""
    ref = vm.lookup(session, instance.name)
    if ref is None:
        raise EvacuationRefused(
            reason=f"{instance.uuid}'s VM is not in this host's XAPI pool: evacuation needs the "
                   "failed host and this one in one pool, with the disks on shared storage")
    if not disks_reachable(session, instance):
        raise EvacuationRefused(
            reason=f"{instance.uuid}'s disks are on the failed host's own storage, which this "
                   "host cannot reach: evacuation needs them on a shared SR of the pool")
    return ref


def recover_here(session: XenAPISession, instance: Any) -> None:
    ref = check_possible(session, instance)
    try:
        if session.call_xenapi("VM.get_power_state", ref) != "Halted":
            session.call_xenapi("VM.power_state_reset", ref)
    except XenAPIError as exc:
        if exc.code == "HOST_IS_LIVE":
            raise EvacuationRefused(
                reason=f"XAPI says the host {instance.uuid} ran on is alive; evacuate only "
                       "servers of a host that failed") from None
        raise
    session.call_xenapi("VM.set_affinity", ref, session.host_ref)
    vm.start(session, ref, START_TIMEOUT)
    LOG.info("evacuated %s: started on this host from its shared disks", instance.uuid,
             instance=instance)
