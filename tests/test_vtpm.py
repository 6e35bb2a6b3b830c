"""xapisim's VTPM class against xapi's rules, through the XenAPI SDK.

From xen-api (ocaml/xapi): xapi_vtpm.ml (create: halted VM, one VTPM, pool
feature ``restrict_vtpm``; destroy: halted or suspended; a unique VTPM's
contents are not copied), xapi_vm_lifecycle.ml (``create_vtpm`` needs Halted;
VTPM_MAX_AMOUNT_REACHED), xapi_xenops.ml (a BIOS VM with a VTPM does not
start: NOT_IMPLEMENTED; ``platform:vtpm=true`` makes one at start),
xapi_vm.ml (VM.destroy destroys its VTPMs) and xapi_vm_clone.ml (clones and
snapshots get a copy).

Not confirmed against a real host: the exact text of VM_BAD_POWER_STATE's
"expected" for VTPM.create (we give the lifecycle's list), and that the
first boot is what fills the state (swtpm manufactures it then; xapi keeps
it as the secret the VTPM names).
"""
from __future__ import annotations

import pytest
import XenAPI

from tests.conftest import diskless_vm
from xapisim.messages import vtpm as sim_vtpm


def _uefi_vm(x, name: str = "tpm-guest") -> str:
    vm = diskless_vm(x, name)
    x.VM.set_HVM_boot_policy(vm, "BIOS order")
    x.VM.set_HVM_boot_params(vm, {"order": "dc", "firmware": "uefi"})
    return vm


def _code(e: XenAPI.Failure) -> list[str]:
    return e.details


def _contents(sim, vtpm: str) -> str:
    return sim_vtpm.contents(sim.backend.store, vtpm)


def test_create_on_a_halted_vm_then_boot_fills_and_keeps_its_state(sim, xapi):
    x = xapi.xenapi
    vm = _uefi_vm(x)
    vtpm = x.VTPM.create(vm, True)
    rec = x.VTPM.get_record(vtpm)
    assert rec["VM"] == vm and rec["is_unique"] and rec["persistence_backend"] == "xapi"
    assert "contents" not in rec  # internal to xapi
    assert x.VM.get_VTPMs(vm) == [vtpm]
    assert _contents(sim, vtpm) == ""
    x.VM.start(vm, False, False)
    state = _contents(sim, vtpm)
    assert state
    x.VM.hard_reboot(vm)
    x.VM.hard_shutdown(vm)
    x.VM.start(vm, False, False)
    assert _contents(sim, vtpm) == state


def test_create_is_refused_as_xapi_refuses_it(sim, xapi):
    x = xapi.xenapi
    vm = _uefi_vm(x)
    x.VM.start(vm, False, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VTPM.create(vm, False)
    assert _code(e.value)[0] == "VM_BAD_POWER_STATE"
    x.VM.hard_shutdown(vm)
    vtpm = x.VTPM.create(vm, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VTPM.create(vm, False)
    assert _code(e.value) == ["VTPM_MAX_AMOUNT_REACHED", "1"]
    x.VM.start(vm, False, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VTPM.destroy(vtpm)
    assert _code(e.value)[0] == "VM_BAD_POWER_STATE"
    x.VM.hard_shutdown(vm)
    x.VTPM.destroy(vtpm)
    assert x.VM.get_VTPMs(vm) == []
    # a pool without the feature
    store = sim.backend.store
    store.set("pool", sim.backend.pool_ref, restrictions={"restrict_vtpm": "true"})
    with pytest.raises(XenAPI.Failure) as e:
        x.VTPM.create(vm, False)
    assert _code(e.value) == ["FEATURE_RESTRICTED", "restrict_vtpm"]
    assert x.VM.get_VTPMs(vm) == []


def test_a_bios_vm_with_a_vtpm_does_not_start(xapi):
    x = xapi.xenapi
    vm = diskless_vm(x, "bios-guest")
    x.VM.set_HVM_boot_policy(vm, "BIOS order")
    x.VM.set_HVM_boot_params(vm, {"order": "dc"})  # firmware: bios when not said
    x.VTPM.create(vm, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.start(vm, False, False)
    assert _code(e.value) == ["NOT_IMPLEMENTED", "Booting BIOS VM with VTPMs attached"]
    assert x.VM.get_power_state(vm) == "Halted"


def test_platform_vtpm_makes_one_at_start(xapi):
    x = xapi.xenapi
    vm = _uefi_vm(x)
    x.VM.add_to_platform(vm, "vtpm", "true")
    x.VM.start(vm, False, False)
    [vtpm] = x.VM.get_VTPMs(vm)
    assert not x.VTPM.get_is_unique(vtpm)


def test_destroy_and_copies(sim, xapi):
    x = xapi.xenapi
    vm = _uefi_vm(x)
    unique = x.VTPM.create(vm, True)
    x.VM.start(vm, False, False)
    x.VM.hard_shutdown(vm)
    snap = x.VM.snapshot(vm, "snap")
    [snap_tpm] = x.VM.get_VTPMs(snap)
    assert snap_tpm != unique and _contents(sim, snap_tpm) == ""  # unique: never copied
    other = _uefi_vm(x, "shared-tpm")
    shared = x.VTPM.create(other, False)
    x.VM.start(other, False, False)
    x.VM.hard_shutdown(other)
    clone = x.VM.clone(other, "clone")
    [clone_tpm] = x.VM.get_VTPMs(clone)
    assert _contents(sim, clone_tpm) == _contents(sim, shared) != ""
    secrets = len(x.secret.get_all())
    for v in (vm, snap, other, clone):
        x.VM.destroy(v)
    assert x.VTPM.get_all() == []
    assert len(x.secret.get_all()) == secrets - 4  # each VTPM's state went with it
