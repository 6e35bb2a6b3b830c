"""auto_disk_config: grow the root disk's partition and filesystem to the flavor's size.

The root VDI is already as big as the flavor asks; its only partition and
ext filesystem are grown in dom0 by the ``partition.py`` plugin, with the VDI
plugged into the control domain.  A disk laid out some other way (several
partitions, no table, another filesystem) boots as it is with a warning, as
it did with the old driver.  Needs dom0, so not with independent compute.
"""

from __future__ import annotations

from oslo_log import log as logging

from nova_xenapi import plugins
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

LOG = logging.getLogger(__name__)


def grow(session: XenAPISession, vdi: str, instance_name: str, unplug_retries: int = 10) -> bool:
    """Grow the root partition of ``vdi`` to the end of the disk; True if it changed."""
    dom0 = session.call_xenapi("host.get_control_domain", session.host_ref)
    with disks.plugged(session, dom0, vdi, unplug_retries=unplug_retries) as device:
        try:
            result = plugins.call(session, "partition.py", "grow_root", {"dev": device})
        except XenAPIError as exc:
            if exc.code != "CANNOT_RESIZE_DISK":
                raise
            LOG.warning("auto_disk_config: the root disk of %s keeps its partition size: %s",
                        instance_name, exc.details[1] if len(exc.details) > 1 else exc)
            return False
    LOG.info("auto_disk_config: root partition of %s: %s bytes", instance_name, result)
    return result.startswith("resized")
