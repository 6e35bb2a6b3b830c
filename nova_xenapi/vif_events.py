"""Waiting for Neutron to say it plugged a new server's ports (``network-vif-plugged``).

On XenServer a VIF's port appears in dom0's Open vSwitch when the VM starts
(the vif hotplug script adds it), and only then can Neutron's agent wire it
and report it up.  So, as the old driver and libvirt do, the driver registers
for one ``network-vif-plugged`` event per port Neutron shows as down, starts
the VM, and waits up to ``[DEFAULT] vif_plugging_timeout``.  If an event
reports failure or never comes, ``vif_plugging_is_fatal`` decides: the boot
fails with ``VirtualInterfaceCreateException`` (and the caller's rollback
removes what it made), or it goes on with a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import nova.conf
from nova import exception
from nova.network import model as network_model
from oslo_log import log as logging

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


def expected(network_info: Any) -> list[tuple[str, str]]:
    """One event per port still down; ports already up (or stale in the cache) send none."""
    return [("network-vif-plugged", vif["id"]) for vif in network_info or []
            if vif.get("active", True) is False
            and vif.get("vnic_type") != network_model.VNIC_TYPE_REMOTE_MANAGED]


def _failed(event_name: str, instance: Any) -> None:
    LOG.error("Neutron reported failure on event %s", event_name, instance=instance)
    if CONF.vif_plugging_is_fatal:
        raise exception.VirtualInterfaceCreateException()


@contextlib.contextmanager
def waiting_for_plug(virtapi: Any, instance: Any, network_info: Any, power_on: bool = True
                     ) -> Iterator[None]:
    """Around plugging the VIFs and starting the VM: on leaving, wait for Neutron's events."""
    timeout = CONF.vif_plugging_timeout
    events = expected(network_info) if power_on and timeout and virtapi is not None else []
    if not events:
        yield
        return
    try:
        with virtapi.wait_for_instance_event(instance, events, timeout=timeout,
                                             error_callback=_failed):
            yield
    except exception.InstanceEventTimeout:
        if CONF.vif_plugging_is_fatal:
            LOG.error("Neutron did not report the ports %s plugged within %s s",
                      [tag for _, tag in events], timeout, instance=instance)
            raise exception.VirtualInterfaceCreateException() from None
        LOG.warning("Neutron did not report the ports plugged within %s s; going on "
                    "(vif_plugging_is_fatal is false)", timeout, instance=instance)
