"""Lets Nova load nova-xenapi as ``compute_driver = xenapi.XenAPIDriver`` (it imports only nova.virt.*)."""
from nova_xenapi.driver import XenAPIDriver  # noqa: F401
