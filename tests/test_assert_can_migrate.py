"""VM.assert_can_migrate / VM.migrate_send refusals beyond the maps: SR capabilities, the
options map (copy, force), pCPUs, CBT and encryption (xapi_vm_migrate.ml assert_can_migrate
and assert_can_migrate_vdis; xapi_vm_helpers.ml assert_enough_pcpus; xapi_vdi.ml
change_cbt_status)."""
from __future__ import annotations

import pytest
import XenAPI

from tests.conftest import local_sr
from tests.conftest import login as _login
from tests.test_migrate_send import DATA, _read, _vm_with_disk_and_vif


@pytest.fixture
def pair(world):
    """A VM with a disk and a VIF on the first pool's master, and the standalone pool's
    migrate_receive map, SR and network."""
    src = _login(world.url)
    x = src.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    vm, vdi, vif = _vm_with_disk_and_vif(world, src, master)
    dst = _login(world.pool_url(1))
    y = dst.xenapi
    dhost = y.host.get_all()[0]
    dnet = y.PIF.get_network(y.host.get_PIFs(dhost)[0])
    dest = y.host.migrate_receive(dhost, dnet, {})
    maps = ({vdi: local_sr(y, dhost)}, {vif: dnet})
    return world, src, dst, vm, vdi, dest, maps, master


def _refusal(x, vm, dest, maps, options=None):
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_can_migrate(vm, dest, True, *maps, options or {}, {})
    return e.value.details


def test_a_moving_vdi_with_cbt_enabled_is_refused_and_passes_once_disabled(pair):
    _, src, _, vm, vdi, dest, maps, _ = pair
    x = src.xenapi
    x.VDI.enable_cbt(vdi)
    assert x.VDI.get_cbt_enabled(vdi) is True
    assert _refusal(x, vm, dest, maps) == ["VDI_CBT_ENABLED", vdi]
    x.VDI.disable_cbt(vdi)
    x.VM.assert_can_migrate(vm, dest, True, *maps, {}, {})


def test_cbt_is_refused_on_a_snapshot(pair):
    _, src, _, _, vdi, _, _, _ = pair
    x = src.xenapi
    snap = x.VDI.snapshot(vdi, {})
    with pytest.raises(XenAPI.Failure) as e:
        x.VDI.enable_cbt(snap)
    assert e.value.details == ["OPERATION_NOT_ALLOWED", f"VDI is a snapshot: {snap}"]


def test_an_encrypted_vdi_may_not_move(pair):
    _, src, _, vm, vdi, dest, maps, _ = pair
    x = src.xenapi
    x.VDI.add_to_sm_config(vdi, "key_hash", "0f" * 32)
    assert _refusal(x, vm, dest, maps) == ["VDI_IS_ENCRYPTED", vdi]


def test_more_vcpus_than_the_destination_has_pcpus(pair):
    _, src, _, vm, _, dest, maps, _ = pair
    x = src.xenapi
    x.VM.set_VCPUs_max(vm, "16")  # the destination host has 4
    assert _refusal(x, vm, dest, maps) == ["HOST_NOT_ENOUGH_PCPUS", "16", "4"]
    x.VM.add_to_platform(vm, "vcpu-unrestricted", "true")
    x.VM.assert_can_migrate(vm, dest, True, *maps, {}, {})


def test_copy_mode_needs_a_halted_vm_unless_forced_and_leaves_the_source(pair):
    world, src, dst, vm, vdi, dest, maps, master = pair
    x, y = src.xenapi, dst.xenapi
    x.VM.start_on(vm, master, False, False)
    assert _refusal(x, vm, dest, maps, {"copy": "true"}) == \
        ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.VM.assert_can_migrate(vm, dest, True, *maps, {"copy": "true", "force": "true"}, {})
    x.VM.assert_can_migrate(vm, dest, True, *maps, {"copy": "yes"}, {})  # not "true": no copy
    x.VM.hard_shutdown(vm)
    new = x.VM.migrate_send(vm, dest, True, *maps, {"copy": "true"}, {})
    assert y.VM.get_power_state(new) == "Halted"
    assert _read(world, dst, y.VBD.get_VDI(y.VM.get_VBDs(new)[0]), "127.0.0.3") == DATA
    assert x.VM.get_power_state(vm) == "Halted"  # the source VM and its disk stay
    assert _read(world, src, vdi, "127.0.0.1") == DATA
