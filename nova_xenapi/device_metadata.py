"""Device tags the guest reads: Nova's ``InstanceDeviceMetadata`` for tagged disks and NICs.

A user may tag a block device mapping or a port (at boot, or when attaching
a volume or an interface); the guest finds the tags in the config drive's
and the metadata service's ``devices`` list.  As Nova's libvirt driver
does, the list is built from the instance's tagged ``BlockDeviceMapping``
and ``VirtualInterface`` records:

* a disk gets the ``xen`` bus and, as its address, the Xen virtual block
  device number of its device (xen.git docs/misc/vbd-interface.txt: xvdX is
  ``202 << 8 | index << 4`` for the first 16 disks, ``1 << 28 | index << 8``
  after), and the volume id as its serial;
* a NIC is listed by its MAC (a XAPI VIF has no bus address a guest could
  match), with its tag.

The list is written before the config drive is built at spawn and again
after each attach and detach (the config drive is not rewritten; the
metadata service shows the change).
"""

from __future__ import annotations

from typing import Any

from nova import objects

from nova_xenapi.storage import volumes

XVD_MAJOR = 202


def vbd_number(userdevice: int) -> int:
    """The Xen virtual block device number of xvd<userdevice> (whole disk, no partition)."""
    if userdevice < 16:
        return XVD_MAJOR << 8 | userdevice << 4
    return 1 << 28 | userdevice << 8


def build(context: Any, instance: Any) -> Any:
    """The instance's device metadata, from its tagged mappings and interfaces."""
    devices = []
    for bdm in objects.BlockDeviceMappingList.get_by_instance_uuid(context, instance.uuid):
        if bdm.tag and bdm.device_name:
            address = vbd_number(int(volumes.device_number(bdm.device_name)))
            devices.append(objects.DiskMetadata(
                bus=objects.XenDeviceBus(address=str(address)), serial=bdm.volume_id,
                tags=[bdm.tag]))
    for vif in objects.VirtualInterfaceList.get_by_instance_uuid(context, instance.uuid):
        if "tag" in vif and vif.tag:
            devices.append(objects.NetworkInterfaceMetadata(mac=vif.address, tags=[vif.tag],
                                                            vf_trusted=False))
    return objects.InstanceDeviceMetadata(devices=devices)


def update(context: Any, instance: Any) -> None:
    """Write the instance's device metadata now (Nova saves it with the instance)."""
    if context is None:
        return
    instance.device_metadata = build(context, instance)
    instance.save()


def forget(instance: Any, *, serial: str | None = None, mac: str | None = None) -> None:
    """Drop a detached disk's (by volume id) or NIC's (by MAC) entry.  Nova removes the
    mapping or interface record only after the driver's detach, so the list is not rebuilt."""
    if instance.device_metadata is None:
        return
    kept = [d for d in instance.device_metadata.devices
            if not (serial is not None and getattr(d, "serial", None) == serial
                    or mac is not None and getattr(d, "mac", None) == mac)]
    if len(kept) != len(instance.device_metadata.devices):
        instance.device_metadata = objects.InstanceDeviceMetadata(devices=kept)
        instance.save()
