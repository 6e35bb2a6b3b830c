"""VTPM.*: a VM's virtual TPM 2.0, as xapi_vtpm.ml keeps it.

- ``VTPM.create`` runs as the VM operation ``create_vtpm``: the VM must be
  halted and have no VTPM yet (``VTPM_MAX_AMOUNT_REACHED``); then the pool's
  ``restrictions`` must hold ``restrict_vtpm: false`` (``FEATURE_RESTRICTED``).
- The TPM's state (``contents``, internal to xapi) is a ``secret`` object;
  the first boot of the VM writes it, as swtpm would, and later boots keep it.
- ``VTPM.destroy`` needs the VM halted or suspended; ``VM.destroy`` takes
  the VM's VTPMs with it.
- A clone, copy or snapshot of the VM gets a copy of the VTPM; a unique
  VTPM's contents are never copied: the copy starts empty.
- ``VM.start`` of a BIOS VM with a VTPM is refused with ``NOT_IMPLEMENTED``
  (xapi_xenops.ml: BIOS guests do not find the TPM); a VM whose
  ``platform:vtpm`` is ``true`` gets a VTPM when it starts.
"""
from __future__ import annotations

import base64
import os

from ..call import Call
from ..errors import XapiError
from ..registry import api
from .lifecycle import Operation

FEATURE = "restrict_vtpm"


def _secret(store, value: str) -> str:
    return store.create("secret", {"value": value, "other_config": {}})


def introduce(store, vm: str, is_unique: bool, contents: str = "") -> str:
    """A VTPM record for ``vm`` with its contents in a new secret (no checks)."""
    ref = store.create("VTPM", {"VM": vm, "is_unique": is_unique, "persistence_backend": "xapi",
                                "is_protected": False, "allowed_operations": ["destroy"]})
    store.private[ref]["contents"] = _secret(store, contents)
    return ref


def contents(store, vtpm: str) -> str:
    """The TPM's state, base64 (empty until the VM first boots)."""
    secret = store.private[vtpm].get("contents")
    return store.get("secret", secret)["value"] if secret and store.exists("secret", secret) else ""


def remove(store, vtpm: str) -> None:
    """The VTPM and its secret."""
    secret = store.private.get(vtpm, {}).get("contents")
    if secret and store.exists("secret", secret):
        store.destroy("secret", secret)
    store.destroy("VTPM", vtpm)


def copy_to(store, vtpm: str, vm: str) -> str:
    """Xapi_vtpm.copy: a unique VTPM's copy starts empty."""
    rec = store.get("VTPM", vtpm)
    return introduce(store, vm, rec["is_unique"], "" if rec["is_unique"] else contents(store, vtpm))


def _restricted(store) -> bool:
    pool = next(iter(store.tables["pool"].values()), {})
    return pool.get("restrictions", {}).get(FEATURE) != "false"


@api("VTPM", "create")
def create(call: Call, vm: str, is_unique: bool) -> str:
    store = call.store
    with Operation(call, "VM", vm, "create_vtpm"):
        with store.lock:
            if _restricted(store):
                raise XapiError("FEATURE_RESTRICTED", FEATURE)
            ref = introduce(store, vm, is_unique)
            call.backend.refresh("VM", vm)
            return ref


@api("VTPM", "destroy")
def destroy(call: Call, vtpm: str) -> str:
    store = call.store
    with store.lock:
        vm = store.get("VTPM", vtpm)["VM"]
        power = store.get("VM", vm)["power_state"]
        if power not in ("Halted", "Suspended"):
            raise XapiError("VM_BAD_POWER_STATE", vm, "halted;suspended", power.lower())
        remove(store, vtpm)
        call.backend.refresh("VM", vm)
    return ""


def before_boot(call: Call, vm: str) -> None:
    """What xapi_xenops.ml does with a VM's VTPMs as it builds the domain (store locked)."""
    store = call.store
    rec = store.get("VM", vm)
    uefi = rec["HVM_boot_params"].get("firmware", "bios") == "uefi" and rec["HVM_boot_policy"]
    if not rec["VTPMs"] and rec["platform"].get("vtpm") == "true":
        if _restricted(store):
            raise XapiError("FEATURE_RESTRICTED", FEATURE)
        introduce(store, vm, False)
    if len(rec["VTPMs"]) > 1:
        raise XapiError("INTERNAL_ERROR", "Multiple vTPMs are not supported")
    if rec["VTPMs"] and not uefi:
        raise XapiError("NOT_IMPLEMENTED", "Booting BIOS VM with VTPMs attached")
    for vtpm in rec["VTPMs"]:
        secret = store.private[vtpm]["contents"]
        if not store.get("secret", secret)["value"]:
            # swtpm manufactures the TPM on its first start: its state holds new seeds
            state = b"xapisim-swtpm-2.0\0" + os.urandom(64)
            store.set("secret", secret, value=base64.b64encode(state).decode())
