"""Waiting for the SR's garbage collector to coalesce a disk's VHD chain back.

A snapshot (or clone) on a VHD SR turns the disk into a child of a new base
copy.  Once the snapshot is deleted, the storage manager's garbage collector
folds that base copy back into the disk in the background.  As the old
driver did, the snapshot operation waits for that (rescanning the SR, which
also kicks the collector) so that repeated snapshots cannot grow the chain
towards blktap's depth limit; it gives up with an error after
``[xenserver] vhd_coalesce_max_attempts`` checks, ``vhd_coalesce_poll_interval``
seconds apart.
"""

from __future__ import annotations

import time

from nova import exception
from oslo_log import log as logging

from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

LOG = logging.getLogger(__name__)


class CoalesceTimeout(exception.NovaException):
    msg_fmt = ("the VHD chain of VDI %(vdi)s was not coalesced after %(attempts)d checks "
               "%(interval)s s apart: the SR's garbage collector may be stuck or disabled "
               "(other_config:leaf-coalesce); the chain is now %(depth)d VHDs deep")


def wait(session: XenAPISession, vdi: str, chain_before: list[str], attempts: int,
         interval: float) -> None:
    """Return once ``vdi``'s parent is again one of ``chain_before[1:]`` (or it has none)."""
    sr = session.call_xenapi("VDI.get_SR", vdi)
    good = set(chain_before[1:])
    for attempt in range(attempts):
        session.call_xenapi("SR.scan", sr)
        parent = session.call_xenapi("VDI.get_sm_config", vdi).get("vhd-parent")
        if not parent or parent in good:
            LOG.debug("VHD chain of %s coalesced after %d check(s)", chain_before[0], attempt + 1)
            return
        time.sleep(interval)
    raise CoalesceTimeout(vdi=chain_before[0], attempts=attempts, interval=interval,
                          depth=len(disks.vhd_chain(session, vdi)))
