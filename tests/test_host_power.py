"""host.reboot, host.shutdown and host.power_on, with xapi's preconditions."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import XenAPI

from tests.conftest import diskless_vm, login


def test_reboot_needs_a_disabled_host_then_halts_its_vms_and_comes_back(world):
    x = login(world.url).xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    vms = [diskless_vm(x, f"guest-{i}") for i in range(3)]
    for vm in vms:
        x.VM.start_on(vm, master, False, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.host.reboot(master)
    assert e.value.details == ["HOST_NOT_DISABLED"]
    assert {x.VM.get_power_state(v) for v in vms} == {"Running"}
    x.host.disable(master)
    x.host.reboot(master)
    assert {x.VM.get_power_state(v) for v in vms} == {"Halted"}  # every one, not every other
    assert x.host.get_enabled(master)
    assert x.VM.get_power_state(x.host.get_control_domain(master)) == "Running"


def test_a_member_shut_down_stops_answering_until_the_master_powers_it_on(world):
    x = login(world.url).xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    member = [h for h in x.host.get_all() if h != master][0]
    address = x.host.get_address(member)
    x.host.disable(member)
    x.host.shutdown(member)
    assert x.host_metrics.get_live(x.host.get_metrics(member)) is False
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(world.url_of(address), timeout=5)
    with pytest.raises(XenAPI.Failure) as e:
        x.host.power_on(member)
    assert e.value.details == ["HOST_POWER_ON_MODE_DISABLED"]
    x.host.set_power_on_mode(member, "wake-on-lan", {})
    x.host.power_on(member)
    assert x.host_metrics.get_live(x.host.get_metrics(member)) is True
    assert x.host.get_enabled(member)
