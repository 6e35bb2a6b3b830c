"""Building an instance: disks (from the image, or a root volume), volumes, config drive,
VM record, VIFs, power on.

Each step registers its undo before the next one starts, so a failure at
any point (a bad image, a full SR, a lost connection, a VM that will not
start) leaves the host exactly as it was and Nova sees the original error.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from nova import exception
from nova.api.metadata import base as instance_metadata
from nova.virt import configdrive
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi import agent, device_metadata, disk_qos, vif_events, vm, vtpm
from nova_xenapi.network import XenAPIOpenVswitchDriver
from nova_xenapi.rollback import Rollback
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import (
    blank_disks,
    disks,
    image_cache,
    images,
    kernels,
    root_partition,
    volume_sources,
    volumes,
)

LOG = logging.getLogger(__name__)

CONFIG_DRIVE_SIZE = 64 * units.Mi
IMAGE_PROPS = ("hw_firmware_type", "hw_vm_mode", "os_secure_boot", "os_type")


@dataclass
class Host:
    """What building and changing instances needs from the driver's configuration."""

    session: XenAPISession
    handler: Any  # one of the image handlers (storage.handlers.get_handler)
    vifs: XenAPIOpenVswitchDriver
    sr_filter: str
    default_os_type: str
    running_timeout: float
    independent_compute: bool = False
    cache_images: str = "none"
    max_kernel_size: int = 16 * units.Mi
    unplug_retries: int = 10
    coalesce_max_attempts: int = 20
    coalesce_poll_interval: float = 5.0
    virtapi: Any = None  # Nova's, for waiting on Neutron's events (vif_events)


def take_down(session: XenAPISession, vm_ref: str, instance_uuid: str) -> tuple[list[str], dict]:
    """Discard one of the instance's VMs; the disks it had that the instance owns (still
    there) and the VM's record as it was (for its kernel files)."""
    owned = [vdi for _, vdi in vm.disk_vdis(session, vm_ref)
             if disks.owned_by(session, vdi, instance_uuid)]
    boot = session.get_record("VM", vm_ref) or {}
    discard_vm(session, vm_ref)
    return owned, boot


def discard_vm(session: XenAPISession, vm_ref: str) -> None:
    """Power off (if needed) and destroy a VM record; its VDIs are not touched."""
    vm.hard_shutdown(session, vm_ref)
    vm.destroy(session, vm_ref)


def image_props(image_meta: Any) -> dict:
    props = image_meta.properties if image_meta.obj_attr_is_set("properties") else None
    return {k: props.get(k) for k in IMAGE_PROPS} if props is not None else {}


def add_vdi(host: Host, rb: Rollback, sr: str, instance: Any, role: str, size: int,
             read_only: bool = False) -> str:
    ref = disks.create_vdi(host.session, sr, instance.uuid, role, f"{instance.name} {role}", size,
                           read_only=read_only)
    rb.add(f"{role} disk", disks.destroy_vdi, host.session, ref)
    return ref


def _config_drive(host: Host, rb: Rollback, sr: str, instance: Any, injected_files: Any,
                  admin_password: str | None, network_info: Any) -> str:
    extra_md = {"admin_pass": admin_password} if admin_password else {}
    md = instance_metadata.InstanceMetadata(instance, content=injected_files, extra_md=extra_md,
                                            network_info=network_info)
    vdi = add_vdi(host, rb, sr, instance, "configdrive", CONFIG_DRIVE_SIZE)
    with tempfile.TemporaryDirectory(prefix="nova-xenapi-cd-") as tmp:
        path = os.path.join(tmp, "configdrive")
        with configdrive.ConfigDriveBuilder(instance_md=md) as builder:
            builder.make_drive(path)
        disks.import_file(host.session, vdi, path, "raw", images.TRANSFER_TIMEOUT)
    return vdi


def _ami_boot(host: Host, rb: Rollback, context: Any, sr: str, instance: Any) -> dict:
    """Direct kernel boot fields for an AMI: its kernel (and ramdisk) put in dom0's /boot/guest."""
    session = host.session
    found = {}
    for role, image_id in (("kernel", instance.kernel_id), ("ramdisk", instance.ramdisk_id)):
        if image_id:
            path = kernels.fetch(context, session, sr, image_id, role, instance, host.max_kernel_size,
                                 unplug_retries=host.unplug_retries)
            rb.add(role, kernels.remove, session, path if role == "kernel" else "",
                   path if role == "ramdisk" else "")
            found[role] = path
    return {"PV_bootloader": "", "PV_kernel": found["kernel"], "PV_ramdisk": found.get("ramdisk", ""),
            "PV_args": "root=/dev/xvda ro console=hvc0"}


def _root_disk(host: Host, rb: Rollback, context: Any, sr: str, instance: Any, image_meta: Any,
               root_size: int) -> str:
    """The root VDI holding the image: a clone of the cached base image, or a fresh download."""
    session = host.session

    def fetch(size: int, name_label: str, other_config: dict[str, str]) -> tuple[str, int]:
        return host.handler.fetch(context, session, image_meta, sr, size, name_label, other_config)

    if image_cache.wanted(host.cache_images, image_meta):
        base, _ = image_cache.base_image(session, sr, image_meta, root_size, fetch)
        if disks.virtual_size(session, base) <= root_size:
            root = image_cache.clone(session, sr, base, instance.uuid, f"{instance.name} root",
                                     root_size)
            rb.add("root disk", disks.destroy_vdi, session, root)
            return root
        LOG.info("The cached image %s is bigger than this flavor's disk; downloading it", image_meta.id)
    root, _ = fetch(root_size, f"{instance.name} root",
                    {"nova_instance_uuid": instance.uuid, "nova_disk_type": "root"})
    rb.add("root disk", disks.destroy_vdi, session, root)
    return root


def spawn(host: Host, context: Any, instance: Any, image_meta: Any, injected_files: Any,
          admin_password: str | None, network_info: Any, power_on: bool = True,
          block_device_info: dict | None = None) -> str:
    """Make and start the VM of ``instance``; return its ref.  Its root disk is the image's,
    or with a root volume (boot from volume) that volume's LUN; other volumes in
    ``block_device_info`` are attached at their devices."""
    session = host.session
    mappings = volumes.mappings(block_device_info)
    root_volume = next((m for m in mappings if _is_root(m, block_device_info)), None)
    if root_volume is None:
        if not image_meta.obj_attr_is_set("id") or not image_meta.id:
            raise exception.InvalidBDMFormat(details="no image and no root volume to boot from")
        images.check_bootable(image_meta)
    if vm.lookup(session, instance.name):
        raise exception.InstanceExists(name=instance.name)
    if _disk_format(image_meta) == "ami" and not instance.kernel_id:
        raise exception.ImageUnacceptable(image_id=image_meta.id,
                                          reason="an AMI image needs a kernel_id property")
    sr = disks.find_sr(session, host.sr_filter)
    if root_volume is None:
        host.handler.check_sr(session, sr)
    check_auto_disk_config(host, instance)
    disk_qos.check(instance, instance.flavor)
    vtpm.wanted(instance, image_meta, _boot_mode(instance, image_meta))
    with Rollback() as rb:
        # connected first, so a rollback forgets them after the VM
        attached = connect_volumes(session, rb, mappings, root_volume)
        if root_volume is None:
            root = _root_disk(host, rb, context, sr, instance, image_meta,
                              images.root_disk_size(instance, image_meta))
        else:
            root = dict(attached).pop(disks.ROOT)
        return build(host, rb, context, instance, image_meta, sr, root, network_info,
                     injected_files, admin_password, power_on,
                     volume_disks=[(d, v) for d, v in attached if d != disks.ROOT],
                     root_is_volume=root_volume is not None)


def _is_root(mapping: Any, block_device_info: dict | None) -> bool:
    root_name = (block_device_info or {}).get("root_device_name")
    return mapping.get("boot_index") == 0 or (
        root_name is not None and mapping.get("mount_device") == root_name)


def connect_volumes(session: XenAPISession, rb: Rollback, mappings: list, root: Any = None
                    ) -> list[tuple[str, str]]:
    """(userdevice, VDI) of each volume mapping, its SR connected here (released again by
    ``rb``); ``root`` is the boot volume, disk 0."""
    out = []
    for mapping in mappings:
        volume = volume_sources.from_connection_info(mapping["connection_info"])
        _, vdi = volumes.connect(session, volume)
        rb.add(f"volume {volume.volume_id}'s SR", volumes.release, session, volume)
        device = disks.ROOT if mapping is root else volumes.device_number(mapping["mount_device"])
        out.append((device, vdi))
    return out


def _disk_format(image_meta: Any) -> str | None:
    return image_meta.disk_format if image_meta.obj_attr_is_set("disk_format") else None


def _boot_mode(instance: Any, image_meta: Any) -> str:
    if _disk_format(image_meta) == "ami":
        return "pv"
    return vm.boot_mode({**image_props(image_meta), "vm_mode": instance.vm_mode})


def check_auto_disk_config(host: Host, instance: Any) -> None:
    if instance.auto_disk_config and host.independent_compute:
        raise exception.NotSupportedWithOption(operation="auto_disk_config",
                                               option="[xenserver] independent_compute")


def build(host: Host, rb: Rollback, context: Any, instance: Any, image_meta: Any, sr: str,
          root: str, network_info: Any, injected_files: Any = None,
          admin_password: str | None = None, power_on: bool = True,
          ephemeral: str | None = None, volume_disks: list[tuple[str, str]] = (),
          root_is_volume: bool = False) -> str:
    """The VM of ``instance`` around its root VDI (already as big as the flavor): the root
    partition grown (auto_disk_config), swap, the ephemeral disk (``ephemeral``, or a new one),
    the config drive, VIFs; started if ``power_on``.  Each step's undo goes on ``rb``."""
    session = host.session
    flavor = instance.flavor
    props = image_props(image_meta)
    ami = _disk_format(image_meta) == "ami"
    mode = _boot_mode(instance, image_meta)
    if instance.auto_disk_config and flavor.root_gb and not root_is_volume:
        root_partition.grow(session, root, instance.name, host.unplug_retries)
    os_type = props.get("os_type") or instance.os_type or host.default_os_type
    disk_list = [(disks.ROOT, root, True, False)]
    if flavor.swap:
        size = int(flavor.swap) * units.Mi
        swap = add_vdi(host, rb, sr, instance, "swap", size)
        blank_disks.fill_swap(session, swap, size, os_type)
        disk_list.append((disks.SWAP, swap, False, False))
    if ephemeral is None and flavor.ephemeral_gb:
        size = int(flavor.ephemeral_gb) * units.Gi
        ephemeral = add_vdi(host, rb, sr, instance, "ephemeral", size)
        blank_disks.fill_ephemeral(session, ephemeral, size, os_type)
    if ephemeral is not None:
        disk_list.append((disks.EPHEMERAL, ephemeral, False, False))
    device_metadata.update(context, instance)  # tags, before the config drive shows them
    if configdrive.required_by(instance):
        cd = _config_drive(host, rb, sr, instance, injected_files, admin_password, network_info)
        disk_list.append((disks.CONFIG_DRIVE, cd, False, True))
    disk_list += [(device, vdi, False, False) for device, vdi in volume_disks]
    record = vm.build_record(
        instance, instance.name, mode,
        secure_boot=props.get("os_secure_boot") == "required",
        os_type=os_type,
        host_ref=session.host_ref)
    if ami:
        record.update(_ami_boot(host, rb, context, sr, instance))
    vm_ref = vm.create(session, record)
    rb.add("VM", discard_vm, session, vm_ref)
    if vtpm.wanted(instance, image_meta, mode):
        vtpm.add(session, vm_ref)  # VM.destroy takes it
    own = {disks.SWAP, disks.EPHEMERAL} | (set() if root_is_volume else {disks.ROOT})
    qos = disk_qos.vbd_qos(flavor)
    for userdevice, vdi, bootable, read_only in disk_list:
        disks.create_vbd(session, vm_ref, vdi, userdevice, bootable=bootable, read_only=read_only,
                         qos=qos if userdevice in own else ("", {}))
    with vif_events.waiting_for_plug(host.virtapi, instance, network_info, power_on):
        host.vifs.plug_all(vm_ref, network_info)
        if configdrive.required_by(instance):
            configdrive.update_instance(instance)
        if power_on:
            vm.start(session, vm_ref, host.running_timeout)
    if power_on and agent.should_use(instance):
        agent.configure_at_boot(session, instance, vm_ref, injected_files, admin_password)
    LOG.info("Built %s as a %s VM", instance.name, mode.upper())
    return vm_ref


def destroy(host: Host, instance: Any, destroy_disks: bool = True) -> None:
    """Remove the instance's VM (and its rescue VM) and, if asked, the disks it owned."""
    session = host.session
    owned: list[str] = []
    for name in (instance.name + vm.RESCUE_SUFFIX, instance.name):
        ref = vm.lookup(session, name)
        if ref is None:
            continue
        vdis, boot = take_down(session, ref, instance.uuid)
        owned += [vdi for vdi in vdis if vdi not in owned]
        kernels.remove(session, boot.get("PV_kernel", ""), boot.get("PV_ramdisk", ""))
    if not destroy_disks:
        return
    for vdi in owned:
        disks.destroy_vdi(session, vdi)
    destroy_orphan_disks(session, instance.uuid)


def destroy_orphan_disks(session: XenAPISession, instance_uuid: str) -> None:
    """The instance's disks that no VM uses, left by an operation that was interrupted
    (e.g. a host that went away)."""
    for ref, rec in session.call_xenapi("VDI.get_all_records").items():
        if rec["other_config"].get("nova_instance_uuid") == instance_uuid and not rec["VBDs"]:
            disks.destroy_vdi(session, ref)
