"""Which operations an object allows, and the checks xapi makes before one.

VM rules follow ``xapi_vm_lifecycle.ml``: blocked operations first, then the
power state each operation needs, then operations already in progress, then
the template and snapshot exceptions.
"""
from __future__ import annotations

from ..errors import XapiError

ALL = ("Halted", "Paused", "Suspended", "Running")
VM_POWER: dict[str, tuple[str, ...]] = {
    "start": ("Halted",), "start_on": ("Halted",), "provision": ("Halted",),
    "make_into_template": ("Halted",), "create_vtpm": ("Halted",),
    "changing_VCPUs": ("Halted",), "changing_static_range": ("Halted",),
    "changing_memory_limits": ("Halted",), "changing_shadow_memory": ("Halted",),
    "changing_NVRAM": ("Halted",),
    "unpause": ("Paused",), "resume": ("Suspended",), "resume_on": ("Suspended",),
    "clean_reboot": ("Running",), "clean_shutdown": ("Running",), "pause": ("Running",),
    "suspend": ("Running",), "pool_migrate": ("Running",), "call_plugin": ("Running",),
    "send_sysrq": ("Running",), "send_trigger": ("Running",),
    "changing_memory_live": ("Running",), "changing_VCPUs_live": ("Running",),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",), "copy": ("Halted",),
    "destroy": ("Halted", "Suspended"), "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "shutdown": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
    "snapshot": ALL, "revert": ALL, "metadata_export": ALL, "power_state_reset": ALL,
}
# operations shown in allowed_operations (xapi lists a subset of all)
VM_SHOWN = ("start", "start_on", "provision", "unpause", "resume", "resume_on", "clean_reboot",
            "clean_shutdown", "pause", "suspend", "pool_migrate", "clone", "copy", "destroy",
            "export", "hard_reboot", "hard_shutdown", "shutdown", "checkpoint", "snapshot",
            "revert", "migrate_send", "changing_dynamic_range", "changing_static_range",
            "changing_VCPUs", "changing_VCPUs_live", "make_into_template",
            "changing_memory_limits", "metadata_export")
TEMPLATE_OK = ("changing_dynamic_range", "changing_static_range", "changing_memory_limits",
               "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy",
               "export", "metadata_export", "provision")
SNAPSHOT_OK = ("revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export")
_LONG_COPIES = {"clone", "copy", "export"}
_SNAP = {"snapshot", "checkpoint"}


def _concurrent_ok(op: str, current: list[str]) -> bool:
    for group in (_LONG_COPIES, _SNAP):
        if op in group and all(c in group for c in current):
            return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not any(c in ("hard_shutdown", "hard_reboot") for c in current)
    return False


def vm_error(rec: dict, ref: str, op: str) -> XapiError | None:
    if op in rec["blocked_operations"]:
        return XapiError("OPERATION_BLOCKED", ref, rec["blocked_operations"][op])
    power = rec["power_state"]
    allowed = VM_POWER.get(op, ALL)
    if rec["is_control_domain"] and op in ("changing_VCPUs", "changing_static_range",
                                           "changing_memory_limits"):
        allowed = ("Halted", "Running")
    if rec["is_a_snapshot"] and op in ("clone", "copy"):
        allowed = ("Halted", "Suspended")
    if power not in allowed:
        return XapiError("VM_BAD_POWER_STATE", ref, ", ".join(a.lower() for a in allowed),
                         power.lower())
    current = list(rec["current_operations"].items())
    if current and not _concurrent_ok(op, [c for _, c in current]):
        if len(current) == 1:
            return XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", ref, current[0][1], current[0][0])
        return XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", ref,
                         "{" + ",".join(c for _, c in current) + "}",
                         "{" + ",".join(r for r, _ in current) + "}")
    if op in ("suspend", "checkpoint", "pool_migrate", "migrate_send") and rec["attached_PCIs"]:
        return XapiError("VM_HAS_PCI_ATTACHED", ref)  # passed-through PCI devices cannot move
    if rec["is_a_template"] and not rec["is_a_snapshot"]:
        default = is_default_template(rec)
        if not (op in TEMPLATE_OK or (op in ("destroy", "migrate_send") and not default)):
            return XapiError("VM_IS_TEMPLATE", ref, op)
    if rec["is_a_snapshot"] and op not in SNAPSHOT_OK:
        return XapiError("VM_IS_SNAPSHOT", ref, op)
    if op == "provision" and not rec["is_a_template"]:
        return XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
    if op == "revert" and not rec["is_a_snapshot"]:
        return XapiError("REVERT_ONLY_ALLOWED_ON_SNAPSHOT")
    if op == "create_vtpm" and rec["VTPMs"]:  # checked last in xapi_vm_lifecycle.ml
        return XapiError("VTPM_MAX_AMOUNT_REACHED", str(len(rec["VTPMs"])))
    if rec["is_control_domain"] and op not in ("changing_VCPUs_live", "changing_memory_live",
                                                "changing_dynamic_range", "snapshot"):
        return XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
    return None


def is_default_template(rec: dict) -> bool:
    """A template the host ships (export.ml and import.ml ask the same of a record)."""
    return bool(rec["is_default_template"] or (
        rec["is_a_template"] and rec["other_config"].get("default_template") == "true"))


def check_vm(store, ref: str, op: str) -> dict:
    rec = store.get("VM", ref)
    err = vm_error(rec, ref, op)
    if err is not None:
        raise err
    return rec


def refresh(backend, cls: str, ref: str) -> None:
    store = backend.store
    with store.lock:
        if not store.exists(cls, ref):
            return
        rec = store.get(cls, ref)
        if cls == "VM":
            allowed = [op for op in VM_SHOWN if vm_error(rec, ref, op) is None]
        elif cls == "VBD":
            attached = rec["currently_attached"]
            vm_power = store.tables["VM"].get(rec["VM"], {}).get("power_state", "Halted")
            allowed = []
            if vm_power == "Running":
                allowed += ["unplug", "unplug_force"] if attached else ["plug"]
            if rec["type"] == "CD":
                allowed += ["insert"] if rec["empty"] else ["eject"]
            allowed += ["attach"]
        elif cls == "VDI":
            in_use = any(store.tables["VBD"].get(v, {}).get("currently_attached")
                         for v in rec["VBDs"])
            allowed = ["clone", "snapshot", "copy", "forget", "update", "generate_config",
                       "blocked"]
            if not in_use:
                allowed += ["destroy", "resize", "data_destroy"]
            else:
                allowed += ["resize_online"]
        elif cls == "VIF":
            vm_power = store.tables["VM"].get(rec["VM"], {}).get("power_state", "Halted")
            allowed = (["unplug"] if rec["currently_attached"] else ["plug"]) \
                if vm_power == "Running" else ["attach"]
        else:
            return
        store.set(cls, ref, allowed_operations=allowed)


class Operation:
    """Marks an operation in ``current_operations`` for its duration."""

    def __init__(self, call, cls: str, ref: str, op: str) -> None:
        self.call, self.cls, self.ref, self.op = call, cls, ref, op
        self.key = call.task if call.task != "OpaqueRef:NULL" else f"OpaqueRef:sync-{id(self)}"

    def __enter__(self):
        store = self.call.store
        with store.lock:
            if self.cls == "VM":
                check_vm(store, self.ref, self.op)
            rec = store.get(self.cls, self.ref)
            rec["current_operations"][self.key] = self.op
            store.modified(self.cls, self.ref)
            self.call.backend.refresh(self.cls, self.ref)
        return self

    def __exit__(self, *exc) -> None:
        store = self.call.store
        with store.lock:
            if store.exists(self.cls, self.ref):
                store.get(self.cls, self.ref)["current_operations"].pop(self.key, None)
                store.modified(self.cls, self.ref)
                self.call.backend.refresh(self.cls, self.ref)
