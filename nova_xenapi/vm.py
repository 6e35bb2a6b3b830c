"""VM records and power operations, one XAPI verb per function.

Instances are found by their name label (``instance.name``) and carry
``nova_uuid`` in ``other_config``, as the old driver's VMs did, so VMs made
by it are found too.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.compute import power_state
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi.errors import HostConnectionError, TaskTimeout, XenAPIError
from nova_xenapi.session import XenAPISession

NULL = "OpaqueRef:NULL"

LOG = logging.getLogger(__name__)

POWER_STATES = {
    "Halted": power_state.SHUTDOWN,
    "Running": power_state.RUNNING,
    "Paused": power_state.PAUSED,
    "Suspended": power_state.SUSPENDED,
    "Crashed": power_state.CRASHED,
}
RESCUE_SUFFIX = "-rescue"


def nova_power_state(xapi_state: str) -> int:
    return POWER_STATES.get(xapi_state, power_state.NOSTATE)


def lookup(session: XenAPISession, name_label: str) -> str | None:
    """The VM (not template, not snapshot) called ``name_label``, or None.

    Instance names are unique, so one answer is taken as it is (one round
    trip); only when several VMs share the name are their records read.
    """
    found = session.call_xenapi("VM.get_by_name_label", name_label)
    if len(found) > 1:
        recs = [(ref, session.get_record("VM", ref)) for ref in found]
        found = [ref for ref, rec in recs
                 if rec and not rec["is_a_template"] and not rec["is_control_domain"]]
    if len(found) > 1:
        raise exception.InstanceExists(name=name_label)
    return found[0] if found else None


def find(session: XenAPISession, instance: Any) -> str:
    """The VM of ``instance``; InstanceNotFound if there is none."""
    ref = lookup(session, instance.name)
    if ref is None:
        raise exception.InstanceNotFound(instance_id=instance.uuid)
    return ref


def boot_mode(image_props: dict) -> str:
    """'uefi', 'hvm' or 'pv' from the image's properties."""
    firmware = image_props.get("hw_firmware_type")
    if firmware == "uefi":
        return "uefi"
    mode = image_props.get("hw_vm_mode") or image_props.get("vm_mode")
    if mode in ("xen", "pv"):
        return "pv"
    return "hvm"


def build_record(instance: Any, name_label: str, mode: str, *, secure_boot: bool,
                 os_type: str, host_ref: str) -> dict:
    """The VM.create struct for ``instance`` (memory and vCPUs from its flavor)."""
    flavor = instance.flavor
    mem = str(int(flavor.memory_mb) * units.Mi)
    vcpus = str(int(flavor.vcpus))
    rec: dict[str, Any] = {
        "name_label": name_label,
        "name_description": "",
        "is_a_template": False,
        "memory_static_min": "0",
        "memory_static_max": mem,
        "memory_dynamic_min": mem,
        "memory_dynamic_max": mem,
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "VCPUs_params": {},
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "destroy",
        "affinity": host_ref,
        "user_version": "1",
        "other_config": {"nova_uuid": instance.uuid},
        "xenstore_data": {"vm-data/hostname": instance.hostname or name_label,
                          "vm-data/allowvssprovider": "false"},
        "platform": {"acpi": "1", "apic": "true", "pae": "true", "nx": "true",
                     "timeoffset": "0", "device-model": "qemu-upstream-compat",
                     "viridian": "true" if os_type == "windows" else "false"},
        "recommendations": "",
        "PCI_bus": "",
        "PV_args": "",
        "PV_bootloader": "",
        "PV_bootloader_args": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "dc"},
        "domain_type": "hvm",
    }
    if mode == "uefi":
        rec["HVM_boot_params"] = {"order": "dc", "firmware": "uefi"}
        rec["platform"]["secureboot"] = "true" if secure_boot else "false"
    elif mode == "pv":
        rec.update(HVM_boot_policy="", HVM_boot_params={}, PV_bootloader="pygrub", domain_type="pv")
        rec["platform"] = {"nx": "true", "timeoffset": "0"}
    return rec


def create(session: XenAPISession, record: dict) -> str:
    return session.call_xenapi("VM.create", record)


def get_state(session: XenAPISession, vm_ref: str) -> str:
    return session.call_xenapi("VM.get_power_state", vm_ref)


def on_host(rec: dict, host_ref: str) -> bool:
    """True if a VM record belongs to ``host_ref``: running there, or halted with affinity to it.

    Each nova-compute manages one host of a pool; the others' VMs are not its own.
    """
    resident = rec.get("resident_on", NULL)
    if resident != NULL:
        return resident == host_ref
    return rec.get("affinity", NULL) in (host_ref, NULL)


def _power_action(session: XenAPISession, vm_ref: str, target: str, method: str, *args: Any,
                  timeout: float | None = None) -> None:
    """Run a power action as a task.  If its outcome is unknown (the connection was lost, or
    the task went away with the sessions of an xapi that restarted), the VM's power state
    says it: one that is already ``target`` means the action happened."""
    try:
        session.call_async(method, vm_ref, *args, timeout=timeout)
    except (XenAPIError, HostConnectionError) as exc:
        unknown = isinstance(exc, HostConnectionError) or exc.details[:2] == ["HANDLE_INVALID",
                                                                              "task"]
        if not unknown or get_state(session, vm_ref) != target:
            raise
        LOG.info("%s: its task could not be followed (%s), but the VM is %s", method, exc, target)


def start(session: XenAPISession, vm_ref: str, timeout: float) -> None:
    """Start on the host this compute manages (VM.start could pick any member of the pool)."""
    _power_action(session, vm_ref, "Running", "VM.start_on", session.host_ref, False, False,
                  timeout=timeout)


def hard_shutdown(session: XenAPISession, vm_ref: str) -> None:
    """Power off now; a VM already halted is left alone."""
    if get_state(session, vm_ref) != "Halted":
        force_off(session, vm_ref)


def force_off(session: XenAPISession, vm_ref: str) -> None:
    """VM.hard_shutdown, for a VM known not to be halted."""
    _power_action(session, vm_ref, "Halted", "VM.hard_shutdown")


def clean_shutdown(session: XenAPISession, vm_ref: str, timeout: float) -> bool:
    """Ask the guest to shut down; False if it did not within ``timeout``."""
    try:
        session.call_async("VM.clean_shutdown", vm_ref, timeout=timeout)
        return True
    except TaskTimeout:
        return False
    except XenAPIError as exc:
        LOG.info("Clean shutdown refused (%s)", exc.code)
        return False


def power_off(session: XenAPISession, vm_ref: str, timeout: float) -> bool:
    """Stop the VM: a clean shutdown first if ``timeout`` allows one, else (or if the guest does
    not comply) a hard one.  False if it was halted already."""
    state = get_state(session, vm_ref)
    if state == "Halted":
        return False
    if not (timeout and state == "Running" and clean_shutdown(session, vm_ref, timeout)):
        force_off(session, vm_ref)
    return True


def reboot(session: XenAPISession, vm_ref: str, hard: bool, timeout: float) -> None:
    if not hard:
        try:
            session.call_async("VM.clean_reboot", vm_ref, timeout=timeout)
            return
        except (TaskTimeout, XenAPIError) as exc:
            LOG.warning("Clean reboot failed (%s); rebooting hard", exc)
    if get_state(session, vm_ref) == "Halted":
        start(session, vm_ref, timeout)
    else:
        session.call_async("VM.hard_reboot", vm_ref, timeout=None)


def pause(session: XenAPISession, vm_ref: str) -> None:
    _power_action(session, vm_ref, "Paused", "VM.pause")


def unpause(session: XenAPISession, vm_ref: str) -> None:
    _power_action(session, vm_ref, "Running", "VM.unpause")


def suspend(session: XenAPISession, vm_ref: str) -> None:
    _power_action(session, vm_ref, "Suspended", "VM.suspend")


def resume(session: XenAPISession, vm_ref: str, timeout: float) -> None:
    _power_action(session, vm_ref, "Running", "VM.resume_on", session.host_ref, False, False,
                  timeout=timeout)


def destroy(session: XenAPISession, vm_ref: str) -> None:
    """Destroy a halted VM record (XAPI removes its VBDs and VIFs with it)."""
    session.remove("VM.destroy", vm_ref)


def disk_vdis(session: XenAPISession, vm_ref: str) -> list[tuple[str, str]]:
    """(userdevice, VDI ref) of the VM's disks."""
    out = []
    for vbd in session.call_xenapi("VM.get_VBDs", vm_ref):
        rec = session.get_record("VBD", vbd)
        if rec and rec["type"] == "Disk" and rec["VDI"] != "OpaqueRef:NULL":
            out.append((rec["userdevice"], rec["VDI"]))
    return sorted(out, key=lambda d: int(d[0]) if d[0].isdigit() else 99)


def disks_seen_from(session: XenAPISession, vm_ref: str, host_ref: str,
                    skip_srs_marked: str | None = None) -> bool:
    """Whether every disk of the VM is on an SR plugged into ``host_ref`` (shared storage);
    disks on SRs whose other_config has ``skip_srs_marked`` (volume SRs, which the
    destination plugs itself before a move) are not counted."""
    for _, vdi in disk_vdis(session, vm_ref):
        sr = session.call_xenapi("VDI.get_SR", vdi)
        if skip_srs_marked and session.call_xenapi("SR.get_other_config", sr).get(skip_srs_marked):
            continue
        if host_ref not in {session.call_xenapi("PBD.get_host", p)
                            for p in session.call_xenapi("SR.get_PBDs", sr)}:
            return False
    return True
