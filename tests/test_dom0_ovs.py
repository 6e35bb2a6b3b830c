"""A real Open vSwitch in each simulated dom0 (``SimConfig.real_ovs``), and the vif hotplug.

What XenServer's /etc/xensource/scripts/vif does for Open vSwitch (xapi-project/xen-api
scripts/vif: ``add_to_bridge``, ``set_vif_external_id``): a plugged VIF of domain D,
device N is port vifD.N on its network's bridge, with external_ids attached-mac,
iface-id (from other_config:nicira-iface-id), iface-status, xs-vif-uuid,
xs-network-uuid, xs-vm-uuid; it goes when the VIF is unplugged.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs
from xapisim.plugins import dom0_env


@pytest.fixture
def ovs_sim(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 8192, 4), real_ovs=True,
                       auth_failure_delay=0.01)
    with Simulator(config, tmp_path / "state") as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "ovs-tests")
        yield sim, s.xenapi


def dom0(sim, host_index, *argv):
    """Run a command as a dom0 process would, with the dom0's own tools first on PATH."""
    b = sim.backend
    root = b.dom0_root(list(b.hosts)[host_index])
    r = subprocess.run(list(argv), capture_output=True, text=True, env=dom0_env(root), cwd=root)
    assert r.returncode == 0, r.stderr
    return r.stdout


def interface(sim, host_index, port):
    out = dom0(sim, host_index, "ovs-vsctl", "--format=json", "--columns=name,external_ids,ofport",
               "find", "Interface", f"name={port}")
    rows = json.loads(out)["data"]
    if not rows:
        return None
    name, (_, ids), ofport = rows[0]
    return {"name": name, "external_ids": dict(ids), "ofport": ofport}


def test_a_running_vms_vif_is_a_real_port_with_xenservers_external_ids(ovs_sim):
    sim, x = ovs_sim
    net = x.network.create({"name_label": "br-int", "name_description": "", "bridge": "br-int",
                            "MTU": "1500", "other_config": {}})
    vm = diskless_vm(x, "guest")
    vif = x.VIF.create({"VM": vm, "network": net, "device": "0", "MAC": "fa:16:3e:00:00:01",
                        "MTU": "1500", "other_config": {"nicira-iface-id": "port-1"},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    host = x.host.get_all()[0]
    x.VM.start_on(vm, host, False, False)
    index = list(sim.backend.hosts).index(host)
    port = f"vif{x.VM.get_domid(vm)}.0"
    assert port in dom0(sim, index, "ovs-vsctl", "list-ports", "br-int").split()
    iface = interface(sim, index, port)
    assert iface["external_ids"] == {
        "attached-mac": "fa:16:3e:00:00:01", "iface-id": "port-1", "iface-status": "active",
        "xs-vif-uuid": x.VIF.get_uuid(vif), "xs-network-uuid": x.network.get_uuid(net),
        "xs-vm-uuid": x.VM.get_uuid(vm)}
    assert iface["ofport"] > 0  # ovs-vswitchd took the port into its datapath
    assert "actions=NORMAL" in dom0(sim, index, "ovs-ofctl", "dump-flows", "br-int")
    other = 1 - index
    assert dom0(sim, other, "ovs-vsctl", "list-br").split() == ["xenbr0"], "one switch per dom0"
    assert dom0(sim, other, "ovs-vsctl", "list-ports", "xenbr0").split() == ["eth0"]

    x.VIF.unplug(vif)
    assert interface(sim, index, port) is None
    x.VIF.plug(vif)
    assert interface(sim, index, port) is not None
    x.VM.hard_shutdown(vm)
    assert dom0(sim, index, "ovs-vsctl", "list-ports", "br-int").split() == []


def test_set_manager_opens_ovsdb_on_the_hosts_address(ovs_sim):
    sim, _ = ovs_sim
    address = sim.backend.hosts[list(sim.backend.hosts)[1]].config.address
    dom0(sim, 1, "ovs-vsctl", "set-manager", f"ptcp:6640:{address}")
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((address, 6640), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "OVSDB does not listen on 6640"
            time.sleep(0.05)
    assert dom0(sim, 1, "ovs-vsctl", "get-manager").split() == [f"ptcp:6640:{address}"]


def test_a_simulator_that_fails_to_start_leaves_no_switch_or_listener(tmp_path):
    """The SSH port is taken, so start fails after the listeners and both dom0 switches were
    up: none of them may outlive the error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = SimConfig(password=PASSWORD, hosts=host_configs(2, 8192, 4), real_ovs=True)
        sim = Simulator(config, tmp_path / "state", ssh_port=taken.getsockname()[1])
        with pytest.raises(OSError):
            sim.start()
    assert not sim.servers and not sim.switches and not sim.ssh_servers
    state = str(tmp_path / "state")
    left = subprocess.run(["pgrep", "-f", state], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of {state} still running: {left}"
    with socket.socket() as again:  # the XAPI listener's port is free again
        again.bind(("127.0.0.1", sim.port))
