"""Storage motion and cross-pool migration: host.migrate_receive + VM.migrate_send."""
from __future__ import annotations

import urllib.request

import pytest
import XenAPI

from tests.conftest import diskless_vm, local_sr
from tests.conftest import login as _login

DATA = bytes(range(256)) * 4096  # 1 MiB


def _vm_with_disk_and_vif(sim, s, host):
    x = s.xenapi
    vm = diskless_vm(x, "traveller")
    vdi = x.VDI.create({"name_label": "root", "SR": local_sr(x, host), "virtual_size": str(8 << 20),
                        "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    req = urllib.request.Request(f"{sim.url_of(x.host.get_address(host))}/import_raw_vdi?"
                                 f"session_id={s._session}&vdi={vdi}&format=raw", data=DATA,
                                 method="PUT")
    urllib.request.urlopen(req).read()
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    net = x.PIF.get_network(x.host.get_PIFs(host)[0])
    vif = x.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "02:aa:bb:cc:dd:ee",
                        "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}})
    return vm, vdi, vif


def _read(sim, s, vdi, host_address):
    url = f"{sim.url_of(host_address)}/export_raw_vdi?session_id={s._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url) as r:
        return r.read(len(DATA))


def test_a_running_vm_moves_to_another_pool_with_its_disk_bytes(world):
    src = _login(world.url)
    x = src.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    vm, vdi, vif = _vm_with_disk_and_vif(world, src, master)
    vm_uuid = x.VM.get_uuid(vm)
    x.VM.start_on(vm, master, False, False)
    dst = _login(world.pool_url(1))
    y = dst.xenapi
    dhost = y.host.get_all()[0]
    dnet = y.PIF.get_network(y.host.get_PIFs(dhost)[0])
    dest = y.host.migrate_receive(dhost, dnet, {})
    assert set(dest) == {"SM", "host", "xenops", "session_id", "master"}

    def fails(vdi_map, vif_map):
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.migrate_send(vm, dest, True, vdi_map, vif_map, {})
        return e.value.details

    assert fails({}, {vif: dnet}) == ["VDI_NOT_IN_MAP", vdi]
    assert fails({vdi: local_sr(y, dhost)}, {}) == ["VIF_NOT_IN_MAP", vif]
    x.VM.assert_can_migrate(vm, dest, True, {vdi: local_sr(y, dhost)}, {vif: dnet}, {})
    new = x.VM.migrate_send(vm, dest, True, {vdi: local_sr(y, dhost)}, {vif: dnet}, {})

    assert y.VM.get_uuid(new) == vm_uuid
    assert y.VM.get_power_state(new) == "Running" and y.VM.get_resident_on(new) == dhost
    assert [y.VIF.get_network(v) for v in y.VM.get_VIFs(new)] == [dnet]
    new_vdi = y.VBD.get_VDI(y.VM.get_VBDs(new)[0])
    assert _read(world, dst, new_vdi, "127.0.0.3") == DATA
    with pytest.raises(XenAPI.Failure):
        x.VM.get_by_uuid(vm_uuid)
    with pytest.raises(XenAPI.Failure):
        x.VDI.get_record(vdi)


def test_storage_motion_inside_the_pool(world):
    s = _login(world.url)
    x = s.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    vm, vdi, vif = _vm_with_disk_and_vif(world, s, master)
    x.VM.start_on(vm, master, False, False)
    dest = x.host.migrate_receive(member, x.VIF.get_network(vif), {})
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.migrate_send(vm, dest, True, {vdi: local_sr(x, member)}, {vif: x.VIF.get_network(vif)}, {})
    assert e.value.details[0] == "OPERATION_NOT_ALLOWED"
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(vm, member, {})
    assert e.value.details == ["VM_REQUIRES_SR", vm, local_sr(x, master)]
    assert x.VM.migrate_send(vm, dest, True, {vdi: local_sr(x, member)}, {}, {}) == vm
    assert x.VM.get_resident_on(vm) == member
    moved = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    assert x.VDI.get_SR(moved) == local_sr(x, member)
    assert _read(world, s, moved, "127.0.0.1") == DATA
