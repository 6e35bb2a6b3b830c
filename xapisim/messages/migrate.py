"""Moving running VMs between hosts of one pool: VM.pool_migrate and host.evacuate.

Checks follow xapi_vm_migrate.ml and xapi_host.ml as far as a simulator can
show them: the VM must be Running (``VM_BAD_POWER_STATE`` through the
lifecycle rules), the destination enabled (``HOST_DISABLED``), every disk on
an SR the destination can see (``VM_REQUIRES_SR``; local SRs block a
live migration, as they do without storage motion), and enough free memory
(``HOST_NOT_ENOUGH_FREE_MEMORY``).  Migrating to the VM's own host is
allowed, as xapi allows localhost migration.  ``host.evacuate`` plans a
destination for every running guest first and moves nothing unless all can
go (``CANNOT_EVACUATE_HOST``).  Not modelled: the options map, HA, vGPU/PCI.
"""
from __future__ import annotations

from ..call import Call
from ..errors import XapiError
from ..registry import api
from .lifecycle import Operation
from .vm import bring_down, bring_up, check_host_for, update_host_memory


def _move(call: Call, vm: str, host: str) -> None:
    store = call.store
    rec = store.get("VM", vm)
    paused = rec["power_state"] == "Paused"
    source = rec["resident_on"]
    bring_down(call, vm, power_state=rec["power_state"])
    bring_up(call, vm, host, paused)
    update_host_memory(call.backend, source)


def _check_destination(call: Call, vm: str, host: str) -> None:
    store = call.store
    if store.get("VM", vm)["resident_on"] == host:
        return  # localhost migration: the VM's memory is already counted there
    check_host_for(call, vm, host)


@api("VM", "pool_migrate", cancellable=True)
def pool_migrate(call: Call, vm: str, host: str, options: dict) -> str:
    store = call.store
    store.get("host", host)
    with Operation(call, "VM", vm, "pool_migrate"):
        with store.lock:
            _check_destination(call, vm, host)
        call.progress(0.5)
        with store.lock:
            _move(call, vm, host)
    return ""


def _guests(call: Call, host: str) -> list[str]:
    store = call.store
    return [vm for vm in store.get("host", host)["resident_VMs"]
            if not store.get("VM", vm)["is_control_domain"]]


@api("host", "evacuate", cancellable=True)
def evacuate(call: Call, host: str, network: str, evacuate_batch_size: int) -> str:
    store = call.store
    with store.lock:
        store.get("host", host)
        others = [h for h in store.all("host") if h != host]
        plan: dict[str, str] = {}
        errors: list[str] = []
        for vm in _guests(call, host):
            for target in others:
                try:
                    check_host_for(call, vm, target)
                    plan[vm] = target
                    break
                except XapiError:
                    continue
            else:
                errors.append(store.get("VM", vm)["uuid"])
        if errors:
            raise XapiError("CANNOT_EVACUATE_HOST",
                            f"no other host can take VM(s) {', '.join(errors)}")
    for n, (vm, target) in enumerate(plan.items(), 1):
        pool_migrate(call, vm, target, {})
        call.progress(n / len(plan))
    return ""
