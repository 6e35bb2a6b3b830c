"""Snapshots to Glance, and rescue/unrescue, which both work on copies of an instance."""

from __future__ import annotations

import contextlib
from typing import Any

from nova import exception
from nova.compute import task_states
from oslo_log import log as logging

from nova_xenapi import vm
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.rollback import Rollback
from nova_xenapi.spawn import Host, discard_vm, image_props
from nova_xenapi.storage import coalesce, disks, images

LOG = logging.getLogger(__name__)

#: other_config mark put on the root disk for the moment of ``VDI.snapshot``, so that the
#: snapshot, which xapi gives the disk's other_config, carries it until it is uploaded and
#: removed: the uuid of the XAPI host whose compute takes it (leftovers.py removes what a
#: compute that died meanwhile left)
SNAPSHOTTING = "nova_snapshot_by"


def snapshot(host: Host, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
    """Snapshot the root disk, upload it to ``image_id``, and remove the snapshot."""
    session = host.session
    vm_ref = vm.find(session, instance)
    update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
    root = [vdi for dev, vdi in vm.disk_vdis(session, vm_ref) if dev == disks.ROOT]
    if not root:
        raise exception.NovaException(f"{instance.name} has no root disk to snapshot")
    chain_before = disks.vhd_chain(session, root[0])
    # the root disk alone, as the old driver did: the image is the root disk, and a VM.snapshot
    # would also snapshot the server's volumes, which Cinder owns (and a raw iSCSI SR refuses)
    session.call_xenapi("VDI.add_to_other_config", root[0], SNAPSHOTTING, session.host_uuid)
    try:
        snap = session.call_async("VDI.snapshot", root[0], {}, timeout=None)
    except BaseException:
        _remove_marked_snapshots(session, root[0])  # one whose task's outcome was lost
        raise
    finally:
        try:
            session.remove("VDI.remove_from_other_config", root[0], SNAPSHOTTING)
        except (XenAPIError, HostConnectionError) as exc:  # the next start-up takes it off
            LOG.warning("Could not take the snapshot mark off %s's root disk: %s",
                        instance.name, exc)
    try:
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        metadata = {"properties": {"os_type": instance.os_type or host.default_os_type,
                                   "auto_disk_config": str(bool(instance.auto_disk_config))}}
        host.handler.upload(context, session, image_id, snap, metadata)
    finally:
        with contextlib.suppress(XenAPIError):
            disks.destroy_vdi(session, snap)
    LOG.info("Uploaded a snapshot of %s as image %s", instance.name, image_id)
    if chain_before and host.coalesce_max_attempts:
        coalesce.wait(session, root[0], chain_before, host.coalesce_max_attempts,
                      host.coalesce_poll_interval)


def _remove_marked_snapshots(session: Any, vdi: str) -> None:
    """Destroy the snapshots of ``vdi`` this compute marked: a ``VDI.snapshot`` whose task
    vanished (the sessions expired with it) may still have made one."""
    try:
        for snap in session.call_xenapi("VDI.get_snapshots", vdi):
            rec = session.get_record("VDI", snap)
            if rec and rec["other_config"].get(SNAPSHOTTING) == session.host_uuid:
                disks.destroy_vdi(session, snap)
    except (XenAPIError, HostConnectionError) as exc:  # the next start-up removes it
        LOG.warning("Could not look for a snapshot left by a failed VDI.snapshot: %s", exc)


def rescue(host: Host, context: Any, instance: Any, network_info: Any, image_meta: Any) -> None:
    """Boot a rescue VM from ``image_meta`` with the instance's root disk as its second disk."""
    session = host.session
    vm_ref = vm.find(session, instance)
    rescue_name = instance.name + vm.RESCUE_SUFFIX
    if vm.lookup(session, rescue_name):
        raise exception.InstanceNotRescuable(instance_id=instance.uuid, reason="already rescued")
    images.check_bootable(image_meta)
    roots = [vdi for dev, vdi in vm.disk_vdis(session, vm_ref) if dev == disks.ROOT]
    if not roots:
        raise exception.InstanceNotRescuable(instance_id=instance.uuid, reason="no root disk")
    sr = disks.find_sr(session, host.sr_filter)
    was_running = vm.get_state(session, vm_ref) == "Running"
    with Rollback() as rb:
        vm.hard_shutdown(session, vm_ref)
        if was_running:
            rb.add("instance power", vm.start, session, vm_ref, host.running_timeout)
        rescue_root, _ = host.handler.fetch(
            context, session, image_meta, sr, images.root_disk_size(instance, image_meta),
            f"{instance.name} rescue", {"nova_instance_uuid": instance.uuid, "nova_disk_type": "rescue"})
        rb.add("rescue disk", disks.destroy_vdi, session, rescue_root)
        props = image_props(image_meta)
        record = vm.build_record(instance, rescue_name, vm.boot_mode(props), secure_boot=False,
                                 os_type=props.get("os_type") or host.default_os_type,
                                 host_ref=session.host_ref)
        record["other_config"] = {"nova_rescue_of": instance.uuid}
        rescue_ref = vm.create(session, record)
        rb.add("rescue VM", discard_vm, session, rescue_ref)
        disks.create_vbd(session, rescue_ref, rescue_root, disks.ROOT, bootable=True)
        disks.create_vbd(session, rescue_ref, roots[0], disks.SWAP)
        host.vifs.plug_all(rescue_ref, network_info)
        vm.start(session, rescue_ref, host.running_timeout)


def unrescue(host: Host, instance: Any) -> None:
    """Remove the rescue VM and its disk, and start the instance again."""
    session = host.session
    vm_ref = vm.find(session, instance)
    rescue_ref = vm.lookup(session, instance.name + vm.RESCUE_SUFFIX)
    if rescue_ref is None:
        raise exception.InstanceNotRescuable(instance_id=instance.uuid, reason="not rescued")
    rescue_disks = [vdi for _, vdi in vm.disk_vdis(session, rescue_ref)
                    if (session.get_record("VDI", vdi) or {}).get("other_config", {})
                    .get("nova_disk_type") == "rescue"]
    discard_vm(session, rescue_ref)
    for vdi in rescue_disks:
        disks.destroy_vdi(session, vdi)
    vm.start(session, vm_ref, host.running_timeout)
