"""The driver refuses configurations that cannot work, before it touches anything."""
from __future__ import annotations

import pytest
from nova import exception
from nova.virt import node as nova_node

from nova_xenapi import conf as xconf
from nova_xenapi import driver as xdriver
from nova_xenapi import this_vm


@pytest.fixture
def conf():
    c = xconf.CONF
    c([], project="nova")
    yield c
    c.clear_override("independent_compute", "xenserver")
    c.clear_override("check_host", "xenserver")
    c.clear_override("flat_injected")


@pytest.mark.parametrize("option,group", [("check_host", "xenserver"), ("flat_injected", None)])
def test_independent_compute_refuses_what_needs_the_host(conf, option, group):
    conf.set_override("independent_compute", True, "xenserver")
    conf.set_override("check_host", False, "xenserver")
    conf.set_override(option, True, group)
    with pytest.raises(exception.NotSupportedWithOption, match="independent_compute"):
        xdriver.XenAPIDriver(None).init_host("compute")


def test_check_host_outside_a_xen_guest_says_what_to_do(conf, tmp_path, monkeypatch):
    monkeypatch.setattr(this_vm, "HYPERVISOR_UUID", str(tmp_path / "no-such-file"))
    conf.set_override("check_host", True, "xenserver")
    conf.set_override("independent_compute", False, "xenserver")
    with pytest.raises(exception.NovaException, match="independent_compute = True"):
        xdriver.XenAPIDriver(None).init_host("compute")


def test_check_host_accepts_a_compute_vm_on_its_host_and_refuses_one_elsewhere(conf, sim, tmp_path,
                                                                                monkeypatch):
    from tests.conftest import PASSWORD, diskless_vm, login
    x = login(sim.url).xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    vm = diskless_vm(x, "nova-compute")
    uuid_file = tmp_path / "uuid"
    uuid_file.write_text(x.VM.get_uuid(vm))
    monkeypatch.setattr(this_vm, "HYPERVISOR_UUID", str(uuid_file))
    conf.set_override("connection_url", sim.url, "xenserver")
    conf.set_override("connection_password", PASSWORD, "xenserver")
    conf.set_override("check_host", True, "xenserver")
    conf.set_override("independent_compute", False, "xenserver")
    conf.set_override("state_path", str(tmp_path))  # init_host keeps the node's identity there
    monkeypatch.setattr(nova_node, "LOCAL_NODE_UUID", None)
    try:
        x.VM.start_on(vm, member, False, False)
        with pytest.raises(exception.NovaException, match="does not run on the host"):
            xdriver.XenAPIDriver(None).init_host("compute")
        x.VM.pool_migrate(vm, master, {})
        drv = xdriver.XenAPIDriver(None)
        drv.init_host("compute")
        drv.cleanup_host("compute")
    finally:
        conf.clear_override("connection_url", "xenserver")
        conf.clear_override("connection_password", "xenserver")
        conf.clear_override("state_path")


def test_maintenance_mode_evacuates_and_gives_the_host_back_if_it_cannot(conf, sim):
    from tests.conftest import PASSWORD, diskless_vm, local_sr, login
    x = login(sim.url).xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    conf.set_override("connection_url", sim.url, "xenserver")
    conf.set_override("connection_password", PASSWORD, "xenserver")
    try:
        drv = xdriver.XenAPIDriver(None)  # it manages the master
        movable = diskless_vm(x, "movable")
        x.VM.start_on(movable, master, False, False)
        assert drv.host_maintenance_mode("compute", True) == "on_maintenance"
        assert x.VM.get_resident_on(movable) == member and not x.host.get_enabled(master)
        assert drv.host_maintenance_mode("compute", False) == "off_maintenance"
        assert x.host.get_enabled(master)
        pinned = diskless_vm(x, "pinned")
        vdi = x.VDI.create({"name_label": "d", "SR": local_sr(x, master), "virtual_size": str(1 << 20),
                            "type": "user", "sharable": False, "read_only": False, "other_config": {}})
        x.VBD.create({"VM": pinned, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                      "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                      "qos_algorithm_params": {}})
        x.VM.start_on(pinned, master, False, False)
        with pytest.raises(Exception, match="CANNOT_EVACUATE_HOST"):
            drv.host_maintenance_mode("compute", True)
        assert x.host.get_enabled(master), "the host is enabled again when nothing could move"
    finally:
        conf.clear_override("connection_url", "xenserver")
        conf.clear_override("connection_password", "xenserver")


def test_the_node_identity_is_kept_in_state_path_and_a_different_host_is_refused(conf, tmp_path,
                                                                                 monkeypatch):
    """Nova refuses to start a nova-compute a second time without state_path/compute_id
    (ComputeManager._ensure_existing_node_identity), and writes that file only for drivers
    without a uuid per node: ours gives the XAPI host's uuid, so it writes the file itself.
    (Nova's functional fixtures stub this file out, which is why only the real cloud showed it.)"""
    from nova_xenapi import host as host_ops
    monkeypatch.setattr(nova_node, "LOCAL_NODE_UUID", None)
    conf.set_override("state_path", str(tmp_path))
    try:
        host_ops.keep_node_identity("8d5f7f5a-0000-4000-8000-000000000001")
        assert (tmp_path / "compute_id").read_text().strip() == "8d5f7f5a-0000-4000-8000-000000000001"
        host_ops.keep_node_identity("8d5f7f5a-0000-4000-8000-000000000001")  # a restart
        with pytest.raises(exception.InvalidConfiguration, match="manages one host"):
            host_ops.keep_node_identity("8d5f7f5a-0000-4000-8000-000000000002")
    finally:
        conf.clear_override("state_path")
