"""What a nova-compute killed in the middle of an operation left on its host, removed at start-up.

Nova's own restart path (``ComputeManager._init_instance``) deals with the
instances: a boot cut short goes to ERROR, and deleting it removes its VM
and every disk tagged with it (``spawn.destroy``, ``destroy_orphan_disks``);
a resize cut short while migrating is reverted through
``finish_revert_migration``; a snapshot's task state is cleared. What no
instance owns is this module's. The objects that live for one operation
only carry a mark in ``other_config``, whose value is the uuid of the XAPI
host of the nova-compute that made them (a pool's hosts share one database,
and each compute cleans only its own):

- ``disks.PLUGGED``: a VBD plugging a disk into dom0 or into this compute VM
  (``disks.plugged``: image downloads, snapshot uploads, kernels, partition
  growing);
- ``snapshot.SNAPSHOTTING``: put on the root disk just before ``VDI.snapshot`` and
  taken off after, so the snapshot being uploaded carries it from its birth
  (xapi copies a VDI's ``other_config`` to its snapshot:
  ``Xapi_vdi.snapshot_and_clone`` in xapi-project/xen-api);
- ``image_cache.FILLING``: a cached image's base VDI until all its bytes are in
  (``image_cache``), so a half-written base is never cloned.

``sweep`` runs from ``init_host``, when nothing of this process is under way.
A task of the dead process stays pending on the host until xapi's own
garbage collection ends it with the process's sessions; staged VHDs of a
migration cut short are the migration's (``migration``).
"""

from __future__ import annotations

from oslo_log import log as logging

from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.snapshot import SNAPSHOTTING
from nova_xenapi.storage import disks
from nova_xenapi.storage.image_cache import FILLING

LOG = logging.getLogger(__name__)


def sweep(session: XenAPISession, unplug_retries: int = 10) -> list[str]:
    """Remove what this host's compute marked as in use by an operation; what was removed."""
    me = session.host_uuid
    removed: list[str] = []
    for ref, rec in session.call_xenapi("VBD.get_all_records").items():
        if rec["other_config"].get(disks.PLUGGED) == me:
            disks.unplug_vbd(session, ref, unplug_retries)
            session.remove("VBD.destroy", ref)
            removed.append(f"VBD {rec['uuid']} plugging VDI {rec['VDI']} into VM {rec['VM']}")
    for ref, rec in session.call_xenapi("VDI.get_all_records").items():
        other = rec["other_config"]
        if other.get(SNAPSHOTTING) == me and not rec["is_a_snapshot"]:
            # the disk a snapshot was taken of: it is the instance's, only the mark goes
            session.call_xenapi("VDI.remove_from_other_config", ref, SNAPSHOTTING)
        elif other.get(SNAPSHOTTING) == me or other.get(FILLING) == me:
            disks.destroy_vdi(session, ref)
            kind = "snapshot being uploaded" if rec["is_a_snapshot"] else "half-written cached image"
            removed.append(f"VDI {rec['uuid']} ({kind})")
    return removed


def sweep_at_start(session: XenAPISession, unplug_retries: int = 10) -> None:
    """``sweep``, logged; a host that fails it does not stop nova-compute from starting."""
    try:
        removed = sweep(session, unplug_retries)
    except (XenAPIError, HostConnectionError) as exc:
        LOG.warning("Could not remove what an interrupted operation left on this host: %s", exc)
        return
    for what in removed:
        LOG.warning("Removed %s, left by an operation nova-compute did not finish", what)
