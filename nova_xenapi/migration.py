"""Resize and cold migration: the disks go from the source dom0 to the destination's.

As with the old driver: the source powers the VM off, renames it
``<name>-orig`` (so a resize on the same host can build the new VM beside
it) and stages the VHD chains of its root and ephemeral disks in dom0's
``/images`` (``migration.py`` plugin).  Nova hands the returned disk info
to the destination, whose dom0 fetches the chains over SFTP, after which
the destination builds the VM around them, grown to the new flavor.
Confirming destroys the ``-orig`` VM; reverting renames it back and starts
it.  Cinder volumes are not staged: they are detached from the ``-orig`` VM,
attached to the new VM, and attached again on a revert.  Disks never
shrink.  Needs VHD files, so a file SR (ext, nfs) on both sides, and dom0s
that trust each other's root keys.

A failure on the source puts the VM back as it was; one on the destination
removes what the destination received.  If the server is then deleted, what
the source set aside goes too (``discard_set_aside``): at once on the same
host, or, on another source host, when Nova's periodic clean-up finds the
``-orig`` VM of a deleted server there.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nova import exception
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi import disk_qos, plugins, spawn, vm, vtpm
from nova_xenapi.dom0 import FILE_SR_TYPES
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.rollback import Rollback
from nova_xenapi.spawn import Host
from nova_xenapi.storage import disks, kernels, volumes

LOG = logging.getLogger(__name__)

ORIG_SUFFIX = "-orig"
ORIG_KEY = "nova_resize_orig_of"  # other_config of the -orig VM, in place of nova_uuid
DISKS = (("root", disks.ROOT), ("ephemeral0", disks.EPHEMERAL))


def _refuse(instance: Any, reason: str) -> exception.InstanceFaultRollback:
    """An error that makes Nova put the instance back as it was (it is still on the source)."""
    return exception.InstanceFaultRollback(
        inner_exception=exception.ResizeError(reason=f"{instance.name}: {reason}"))


def _file_sr(session: Any, sr: str, instance: Any) -> str:
    rec = session.call_xenapi("SR.get_record", sr)
    if rec["type"] not in FILE_SR_TYPES:
        raise _refuse(instance, f"resize and migration copy VHD files, which a {rec['type']} SR "
                      f"does not keep; they need an SR of type {', '.join(FILE_SR_TYPES)}")
    return rec["uuid"]


def _check_no_shrink(session: Any, instance: Any, flavor: Any, found: dict[str, str]) -> None:
    for label, userdevice, gib in (("root", disks.ROOT, flavor.root_gb),
                                   ("ephemeral", disks.EPHEMERAL, flavor.ephemeral_gb)):
        vdi = found.get(userdevice)
        if vdi and gib and disks.virtual_size(session, vdi) > int(gib) * units.Gi:
            raise _refuse(instance, f"the {label} disk cannot shrink to {gib} GiB")
    if found.get(disks.EPHEMERAL) and not flavor.ephemeral_gb:
        raise _refuse(instance, "the new flavor has no ephemeral disk for the one the server has")


def _rename(session: Any, vm_ref: str, name: str, instance_uuid: str, orig: bool) -> None:
    session.call_xenapi("VM.set_name_label", vm_ref, name)
    other = session.call_xenapi("VM.get_other_config", vm_ref)
    other.pop(ORIG_KEY if not orig else "nova_uuid", None)
    other[ORIG_KEY if orig else "nova_uuid"] = instance_uuid
    session.call_xenapi("VM.set_other_config", vm_ref, other)


def _remove_staged(session: Any, instance_uuid: str) -> None:
    """Remove the instance's staged disks from dom0's /images, asking again after a failure
    (what stays there fills dom0's disk); a failure in the end is only logged."""
    try:
        session.again(plugins.call, session, "migration.py", "remove_staged",
                      {"instance_uuid": instance_uuid})
    except (plugins.PluginsMissing, XenAPIError, HostConnectionError) as exc:
        LOG.warning("Could not remove the staged disks of %s from dom0: %s", instance_uuid, exc)


def migrate_disk_and_power_off(host: Host, instance: Any, flavor: Any, timeout: int,
                               ssh_port: int, block_device_info: dict | None = None) -> str:
    """On the source: stop the VM, set it aside as ``-orig``, stage its disks; the disk info."""
    session = host.session
    vm_ref = vm.find(session, instance)
    # the server's own disks travel; its volumes are Cinder's and are attached again there
    found = {dev: vdi for dev, vdi in vm.disk_vdis(session, vm_ref)
             if not volumes.is_volume(session, vdi)}
    if disks.ROOT not in found:
        raise _refuse(instance, "the server has no root disk to move")
    _check_no_shrink(session, instance, flavor, found)
    try:
        disk_qos.check(instance, flavor)
    except exception.InvalidInput as e:
        raise _refuse(instance, e.kwargs["reason"]) from e
    if vtpm.has(session, vm_ref):
        raise _refuse(instance, "the server has a vTPM, whose state XAPI keeps with its VM, and "
                                "a resize or cold migration makes a new VM (live-migrate it)")
    sr_uuid = _file_sr(session, session.call_xenapi("VDI.get_SR", found[disks.ROOT]), instance)
    try:
        return _stop_and_stage(host, instance, flavor, timeout, ssh_port, vm_ref, found, sr_uuid,
                               block_device_info)
    except exception.InstanceFaultRollback:
        raise
    except Exception as exc:
        # every step was undone: the VM is running under its name again, nothing is staged
        raise _refuse(instance, f"could not stage the disks: {exc}") from exc


def _stop_and_stage(host: Host, instance: Any, flavor: Any, timeout: int, ssh_port: int,
                    vm_ref: str, found: dict[str, str], sr_uuid: str,
                    block_device_info: dict | None) -> str:
    session = host.session
    with Rollback() as rb:
        if vm.power_off(session, vm_ref, timeout):
            rb.add("power", vm.start, session, vm_ref, host.running_timeout)
        if volumes.mappings(block_device_info):  # off the source, as libvirt disconnects them
            volumes.detach_all(session, vm_ref, block_device_info, host.unplug_retries)
            rb.add("volumes", volumes.attach_all, session, vm_ref, block_device_info)
        # undone from the first call on: a rename that fails halfway (the name set, the
        # other_config not) leaves a VM that neither Nova's name nor the -orig mark finds
        rb.add("name", _rename, session, vm_ref, instance.name, instance.uuid, False)
        _rename(session, vm_ref, instance.name + ORIG_SUFFIX, instance.uuid, orig=True)
        rb.add("staged disks", _remove_staged, session, instance.uuid)
        staged = {}
        for label, userdevice in DISKS:
            if userdevice in found:
                chain = disks.vhd_chain(session, found[userdevice])
                out = json.loads(plugins.call(session, "migration.py", "stage_vhds", {
                    "instance_uuid": instance.uuid, "disk": label, "sr_uuid": sr_uuid,
                    "vdi_uuids": ",".join(chain)}))
                staged[label] = out["count"]
        address = session.call_xenapi("host.get_address", session.host_ref)
    LOG.info("Staged the disks of %s for %s on %s", instance.name, flavor.name, address)
    return json.dumps({"source_host": address, "source_port": ssh_port, "disks": staged})


def _receive(host: Host, rb: Rollback, instance: Any, info: dict, sr: str, sr_uuid: str,
             label: str, count: int) -> str:
    session = host.session
    uuids = [str(uuid.uuid4()) for _ in range(count)]
    # from here on the SR may hold the chain, before XAPI has a VDI for it
    rb.add(f"received {label} disk", _discard_received, session, sr, uuids[0])
    plugins.call(session, "migration.py", "receive_vhds", {
        "instance_uuid": instance.uuid, "disk": label, "source_host": info["source_host"],
        "source_port": str(info["source_port"]), "count": str(count), "sr_uuid": sr_uuid,
        "uuids": ",".join(uuids)})
    session.call_xenapi("SR.scan", sr)
    vdi = session.call_xenapi("VDI.get_by_uuid", uuids[0])
    role = "root" if label == "root" else "ephemeral"
    session.call_xenapi("VDI.set_name_label", vdi, f"{instance.name} {role}")
    session.call_xenapi("VDI.set_other_config", vdi, {"nova_instance_uuid": instance.uuid,
                                                      "nova_disk_type": role})
    return vdi


def _discard_received(session: Any, sr: str, leaf_uuid: str) -> None:
    """Destroy a received chain's leaf VDI (the SR's garbage collector takes its parents).
    XAPI may not have a VDI for the files yet: the SR is scanned first then; no files is
    fine, the receive failed before anything reached the SR."""
    for scan_first in (False, True):
        if scan_first:
            session.call_xenapi("SR.scan", sr)
        try:
            vdi = session.call_xenapi("VDI.get_by_uuid", leaf_uuid)
        except XenAPIError as exc:
            if exc.code != "UUID_INVALID":
                raise
            continue
        disks.destroy_vdi(session, vdi)
        return


def _grow(session: Any, vdi: str, gib: int) -> None:
    if gib and disks.virtual_size(session, vdi) < int(gib) * units.Gi:
        session.call_xenapi("VDI.resize", vdi, str(int(gib) * units.Gi))


def finish_migration(host: Host, context: Any, instance: Any, image_meta: Any, disk_info: str,
                     network_info: Any, power_on: bool, block_device_info: dict | None = None) -> str:
    """On the destination: fetch the staged disks, grow them to the flavor, build the VM."""
    session = host.session
    try:
        info = json.loads(disk_info)
        staged = {label: int(n) for label, n in info["disks"].items()}
        if not isinstance(info["source_host"], str) or not 0 < int(info["source_port"]) < 65536:
            raise ValueError("bad source")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise exception.ResizeError(reason=f"{instance.name}: the source sent unusable disk "
                                    "info") from None
    if "root" not in staged or set(staged) - {label for label, _ in DISKS}:
        raise exception.ResizeError(reason=f"{instance.name}: the source staged {sorted(staged)}")
    if vm.lookup(session, instance.name):
        raise exception.InstanceExists(name=instance.name)
    spawn.check_auto_disk_config(host, instance)
    sr = disks.find_sr(session, host.sr_filter)
    sr_uuid = _file_sr(session, sr, instance)
    flavor = instance.flavor
    with Rollback() as rb:
        got = {label: _receive(host, rb, instance, info, sr, sr_uuid, label, count)
               for label, count in staged.items()}
        _grow(session, got["root"], flavor.root_gb)
        if "ephemeral0" in got:
            _grow(session, got["ephemeral0"], flavor.ephemeral_gb)
        attached = spawn.connect_volumes(session, rb, volumes.mappings(block_device_info))
        return spawn.build(host, rb, context, instance, image_meta, sr, got["root"],
                           network_info, power_on=power_on, ephemeral=got.get("ephemeral0"),
                           volume_disks=attached)


def confirm_migration(host: Host, instance: Any) -> None:
    """On the source: the migration stands; destroy the ``-orig`` VM and its disks."""
    discard_set_aside(host, instance)


def discard_set_aside(host: Host, instance: Any) -> None:
    """Destroy what a resize or migration set aside on this host: the ``-orig`` VM (only
    one that is this instance's), its disks and kernel files, and the staged disks.

    Besides confirming, for a server deleted while its migration had failed: on the
    same host when it is deleted, on a source host when Nova cleans up after it
    (``delete_instance_files``)."""
    session = host.session
    orig = vm.lookup(session, instance.name + ORIG_SUFFIX)
    if orig is not None and (session.get_record("VM", orig) or {}).get(
            "other_config", {}).get(ORIG_KEY) != instance.uuid:
        orig = None
    if orig is not None:
        owned, boot = spawn.take_down(session, orig, instance.uuid)
        for vdi in owned:
            disks.destroy_vdi(session, vdi)
        new = vm.lookup(session, instance.name)  # a resize on the same host keeps its kernel file
        in_use = (session.get_record("VM", new) or {}) if new else {}
        kernels.remove(session, *("" if boot.get(key) == in_use.get(key) else boot.get(key, "")
                                  for key in ("PV_kernel", "PV_ramdisk")))
    _remove_staged(session, instance.uuid)


def finish_revert_migration(host: Host, instance: Any, power_on: bool,
                            block_device_info: dict | None = None) -> None:
    """On the source: the migration is undone; the ``-orig`` VM becomes the instance again,
    with its volumes attached again."""
    session = host.session
    orig = vm.lookup(session, instance.name + ORIG_SUFFIX)
    if orig is not None:
        _rename(session, orig, instance.name, instance.uuid, orig=False)
    _remove_staged(session, instance.uuid)
    vm_ref = vm.find(session, instance)
    volumes.attach_all(session, vm_ref, block_device_info)
    if power_on and vm.get_state(session, vm_ref) == "Halted":
        vm.start(session, vm_ref, host.running_timeout)
