"""pool.join and pool.eject move hosts between pools, with xapi's checks and errors."""
from __future__ import annotations

import pytest
import XenAPI

from tests.conftest import PASSWORD, diskless_vm, local_sr
from tests.conftest import login as _login
from xapisim import SimConfig, Simulator, host_configs
from xapisim.backend import HostConfig


def _failure(fn, *args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_a_standalone_host_joins_with_its_storage_and_answers_as_a_member(world):
    lone = _login(world.pool_url(1)).xenapi
    me = lone.host.get_all()[0]
    my_uuid = lone.host.get_uuid(me)
    sr = local_sr(lone, me)
    vdi = lone.VDI.create({"name_label": "keep-me", "SR": sr, "virtual_size": str(1 << 20),
                           "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    vdi_uuid = lone.VDI.get_uuid(vdi)
    template = [r for r, v in lone.VM.get_all_records().items() if v["is_a_template"]][0]
    lone.VM.clone(template, "left-behind")
    lone.pool.join("127.0.0.1", "root", PASSWORD)

    assert _failure(XenAPI.Session(world.url_of("127.0.0.3")).xenapi.login_with_password,
                    "root", PASSWORD, "2.21", "t") == ["HOST_IS_SLAVE", "127.0.0.1"]
    x = _login(world.url).xenapi
    host = x.host.get_by_uuid(my_uuid)
    assert len(x.host.get_all()) == 3
    assert x.VDI.get_name_label(x.VDI.get_by_uuid(vdi_uuid)) == "keep-me"
    assert x.VDI.get_SR(x.VDI.get_by_uuid(vdi_uuid)) == local_sr(x, host)
    assert x.VM.get_by_name_label("left-behind") == []  # VMs are not part of the joined metadata
    dom0 = x.host.get_control_domain(host)
    assert x.VM.get_is_control_domain(dom0) and x.VM.get_resident_on(dom0) == host
    assert len(x.host.get_host_CPUs(host)) == 4
    assert [x.PIF.get_network(p) for p in x.host.get_PIFs(host)] == \
        [x.PIF.get_network(p) for p in x.host.get_PIFs(x.pool.get_master(x.pool.get_all()[0]))]
    assert len(world.backends) == 1


def test_join_checks_in_xapis_order(world):
    lone = _login(world.pool_url(1)).xenapi
    assert _failure(lone.pool.join, "127.0.0.9", "root", PASSWORD) == ["JOINING_HOST_CONNECTION_FAILED"]
    assert _failure(lone.pool.join, "127.0.0.1", "root", "wrong")[0] == "SESSION_AUTHENTICATION_FAILED"
    assert _failure(lone.pool.join, "127.0.0.2", "root", PASSWORD) == ["HOST_IS_SLAVE", "127.0.0.1"]
    assert _failure(lone.pool.join, "127.0.0.3", "root", PASSWORD) == \
        ["OPERATION_NOT_ALLOWED", "Host cannot become slave of itself"]
    master = _login(world.url).xenapi
    assert _failure(master.pool.join, "127.0.0.3", "root", PASSWORD) == \
        ["JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"]
    lone.VM.start(diskless_vm(lone, "busy"), False, False)
    assert _failure(lone.pool.join, "127.0.0.1", "root", PASSWORD) == \
        ["JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"]


def test_eject_returns_a_member_to_a_fresh_pool_of_its_own(world):
    x = _login(world.url).xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    member_uuid = x.host.get_uuid(member)
    assert _failure(x.pool.eject, master) == ["INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
    vm = diskless_vm(x, "resident")
    x.VM.start_on(vm, member, False, False)
    assert _failure(x.pool.eject, member) == ["OPERATION_NOT_ALLOWED", "VM resident on host"]
    x.VM.hard_shutdown(vm)
    member_sr_uuid = x.SR.get_uuid(local_sr(x, member))
    x.pool.eject(member)
    assert member not in x.host.get_all()
    assert _failure(x.SR.get_by_uuid, member_sr_uuid)[0] == "UUID_INVALID"
    alone = _login(world.url_of("127.0.0.2")).xenapi  # it answers as a master again
    assert [alone.host.get_uuid(h) for h in alone.host.get_all()] == [member_uuid]
    assert alone.pool.get_master(alone.pool.get_all()[0]) == alone.host.get_all()[0]


def test_pools_survive_a_restart(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       other_pools=[[HostConfig("127.0.0.3", "xs-host-3", 8192, 4)]])
    with Simulator(config, tmp_path / "s") as sim:
        lone = _login(sim.pool_url(1)).xenapi
        uuid = lone.host.get_uuid(lone.host.get_all()[0])
    with Simulator(config, tmp_path / "s") as sim:
        assert len(sim.backends) == 2
        lone = _login(sim.url_of("127.0.0.3")).xenapi
        assert lone.host.get_uuid(lone.host.get_all()[0]) == uuid
        lone.pool.join("127.0.0.1", "root", PASSWORD)
    with Simulator(config, tmp_path / "s") as sim:
        assert len(sim.backends) == 1
        assert len(_login(sim.url).xenapi.host.get_all()) == 2


def test_join_and_migrate_over_json_rpc(world):
    from tests.conftest import JsonRpc
    lone = JsonRpc(world.pool_url(1))
    lone.session = lone.call("session.login_with_password", "root", PASSWORD, "2.21", "json")
    with pytest.raises(XenAPI.Failure) as e:
        lone.call("pool.join", "127.0.0.2", "root", PASSWORD)
    assert e.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]
    host = lone.call("host.get_all")[0]
    net = lone.call("PIF.get_network", lone.call("host.get_PIFs", host)[0])
    dest = lone.call("host.migrate_receive", host, net, {})
    assert dest["host"] == host and dest["master"] == "http://127.0.0.3"
    lone.call("pool.join", "127.0.0.1", "root", PASSWORD)
    master = JsonRpc(world.url)
    master.session = master.call("session.login_with_password", "root", PASSWORD, "2.21", "json")
    assert len(master.call("host.get_all")) == 3
