"""The driver refuses configurations that cannot work, before it touches anything."""
from __future__ import annotations

import pytest
from nova import exception

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
