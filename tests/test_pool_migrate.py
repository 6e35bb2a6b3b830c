"""Pools: designate_new_master, VM.pool_migrate and host.evacuate, with XAPI's errors."""
from __future__ import annotations

import pytest
import XenAPI

from tests.conftest import diskless_vm, local_sr


def _vm(x, name: str, disk_sr: str | None = None) -> str:
    vm = diskless_vm(x, name)
    if disk_sr:
        vdi = x.VDI.create({"name_label": "d", "SR": disk_sr, "virtual_size": str(1 << 20),
                            "type": "user", "sharable": False, "read_only": False,
                            "other_config": {}})
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                      "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return vm


def _free(x, host: str) -> int:
    return int(x.host.compute_free_memory(host))


def test_pool_migrate_moves_a_running_vm_and_its_memory(xapi):
    x = xapi.xenapi
    master, member = x.pool.get_master(x.pool.get_all()[0]), None
    member = [h for h in x.host.get_all() if h != master][0]
    vm = _vm(x, "mover")
    x.VM.start_on(vm, master, False, False)
    before = (_free(x, master), _free(x, member))
    x.VM.pool_migrate(vm, member, {})
    assert x.VM.get_resident_on(vm) == member
    assert x.VM.get_power_state(vm) == "Running"
    assert _free(x, master) > before[0] and _free(x, member) < before[1]
    x.VM.pool_migrate(vm, member, {})  # to its own host: allowed, as xapi's localhost migration


def test_pool_migrate_errors(xapi):
    x = xapi.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    sr = local_sr(x, master)
    vm = _vm(x, "pinned", disk_sr=sr)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(vm, member, {})
    assert e.value.details == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    x.VM.start_on(vm, master, False, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(vm, member, {})
    assert e.value.details == ["VM_REQUIRES_SR", vm, sr]
    x.host.disable(member)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(_started(x, master), member, {})
    assert e.value.details == ["HOST_DISABLED", member]


def _started(x, host: str) -> str:
    vm = _vm(x, "diskless")
    x.VM.start_on(vm, host, False, False)
    return vm


def test_evacuate_moves_everything_or_nothing(xapi):
    x = xapi.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    a, b = _started(x, member), _started(x, member)
    x.host.evacuate(member)
    assert {x.VM.get_resident_on(a), x.VM.get_resident_on(b)} == {master}
    sr = local_sr(x, master)
    pinned = _vm(x, "pinned", disk_sr=sr)
    x.VM.start_on(pinned, master, False, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.host.evacuate(master)
    assert e.value.details[0] == "CANNOT_EVACUATE_HOST"
    assert x.VM.get_resident_on(a) == master  # nothing moved


def test_pool_migrate_over_both_protocols(client):
    master = client("pool.get_master", client("pool.get_all")[0])
    member = [h for h in client("host.get_all") if h != master][0]
    template = [r for r, v in client("VM.get_all_records").items() if v["is_a_template"]][0]
    vm = client("VM.clone", template, "both-wires")
    for vbd in client("VM.get_VBDs", vm):
        client("VBD.destroy", vbd)
    client("VM.set_is_a_template", vm, False)  # the same steps as diskless_vm, over either wire
    with pytest.raises(XenAPI.Failure) as e:
        client("VM.pool_migrate", vm, member, {})
    assert e.value.details == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    client("VM.start_on", vm, master, False, False)
    client("VM.pool_migrate", vm, member, {})
    assert client("VM.get_resident_on", vm) == member
