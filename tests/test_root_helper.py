"""neutron's root commands in dom0: the netwrap plugin's allow-list and xenapi-root-helper end to end."""
from __future__ import annotations

import io
import json

import pytest
import XenAPI

from nova_xenapi import root_helper
from tests.conftest import PASSWORD


@pytest.fixture
def dom0(plugged, tmp_path):
    sim, x = plugged
    conf = tmp_path / "neutron.ini"
    conf.write_text(f"[xenapi]\nconnection_url = {sim.url}\nconnection_password = {PASSWORD}\n")
    return sim, x, str(conf)


def _netwrap(x, argv, stdin=""):
    host = x.host.get_all()[0]
    return json.loads(x.host.call_plugin(host, "netwrap.py", "run_command",
                                         {"cmd": json.dumps(argv), "cmd_input": stdin}))


def test_allowed_commands_change_the_dom0s_switch(dom0):
    sim, x, _ = dom0
    assert _netwrap(x, ["ovs-vsctl", "--timeout=10", "--may-exist", "add-br", "br-int"])["returncode"] == 0
    assert _netwrap(x, ["ovs-vsctl", "add-port", "br-int", "vif3.0"])["returncode"] == 0
    assert _netwrap(x, ["ovs-vsctl", "list-ports", "br-int"])["out"] == "vif3.0\n"
    again = _netwrap(x, ["ovs-vsctl", "add-br", "br-int"])
    assert again["returncode"] == 1 and "already exists" in again["err"]
    assert _netwrap(x, ["ovs-ofctl", "add-flows", "br-int", "-"], "priority=1,actions=normal\n")[
        "returncode"] == 0
    assert "actions=normal" in _netwrap(x, ["ovs-ofctl", "dump-flows", "br-int"])["out"]
    assert "br-int" in _netwrap(x, ["ip", "link", "show"])["out"]


@pytest.mark.parametrize("argv", [
    ["sh", "-c", "id"], ["/usr/bin/ovs-vsctl", "list-br"], ["ip", "netns", "exec", "x", "sh"],
    ["ip", "-batch", "/tmp/x"], ["iptables", "-F"], ["rm", "-rf", "/"]])
def test_anything_off_the_allow_list_is_refused(dom0, argv):
    sim, x, _ = dom0
    with pytest.raises(XenAPI.Failure) as e:
        _netwrap(x, argv)
    assert e.value.details[0] == "COMMAND_NOT_ALLOWED"


@pytest.mark.parametrize("cmd", ["not json", "[]", '"ovs-vsctl"', '["ovs-vsctl", 1]',
                                 '["ovs-vsctl", "a\\u0000b"]', '["ovs-vsctl", "a\\nb"]'])
def test_malformed_commands_are_invalid(dom0, cmd):
    sim, x, _ = dom0
    host = x.host.get_all()[0]
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(host, "netwrap.py", "run_command", {"cmd": cmd})
    assert e.value.details[:2] == ["INVALID_ARGUMENT", "cmd"]


class _Stdin(io.StringIO):
    def isatty(self):
        return False


def test_root_helper_passes_output_and_status_through(dom0):
    sim, x, conf = dom0
    out, err = io.StringIO(), io.StringIO()
    assert root_helper.main(["--config-file", conf, "ovs-vsctl", "add-br", "br-ex"],
                            _Stdin(""), out, err) == 0
    out = io.StringIO()
    assert root_helper.main(["--config-file", conf, "ovs-vsctl", "list-br"], _Stdin(""), out, err) == 0
    assert out.getvalue() == "br-ex\n"
    err = io.StringIO()
    assert root_helper.main(["--config-file", conf, "ovs-vsctl", "del-br", "nope"],
                            _Stdin(""), io.StringIO(), err) == 1
    assert "no bridge named nope" in err.getvalue()
    err = io.StringIO()
    assert root_helper.main(["--config-file", conf, "cat", "/etc/shadow"], _Stdin(""),
                            io.StringIO(), err) == root_helper.UNAUTHORIZED
    assert "COMMAND_NOT_ALLOWED" in err.getvalue() and PASSWORD not in err.getvalue()


def test_the_agents_privsep_ovs_ofctl_reaches_a_real_switch_in_dom0(tmp_path):
    """Neutron 29 runs ovs-ofctl through privsep, locally; the privsep daemon that
    xenapi-bootstrap configures has nova_xenapi/agent_tools first on PATH, whose ovs-ofctl
    goes to dom0. Here the daemon's environment runs it against a real Open vSwitch."""
    import os
    import subprocess
    import sysconfig

    from nova_xenapi.agent_tools import CONFIG_ENV, TOOLS_DIR
    from nova_xenapi.dom0 import PLUGIN_DIR
    from xapisim import SimConfig, Simulator, host_configs
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       plugin_dirs=[str(PLUGIN_DIR)], real_ovs=True)
    with Simulator(config, tmp_path / "state") as sim:
        conf = tmp_path / "agent.ini"
        conf.write_text(f"[xenapi]\nconnection_url = {sim.url}\nconnection_password = {PASSWORD}\n")
        env = {**os.environ, CONFIG_ENV: str(conf),
               "PATH": f"{TOOLS_DIR}:{sysconfig.get_path('scripts')}:/usr/bin:/bin"}

        def ofctl(*args, stdin=""):
            return subprocess.run(["ovs-ofctl", *args], input=stdin, capture_output=True, text=True,
                                  env=env, timeout=60)
        root = sim.backend.dom0_root(sim.backend.master_ref)
        subprocess.run(["ovs-vsctl", "add-br", "br-int"], check=True, cwd=root,
                       env={**os.environ, **sim.switches[0].env()})
        r = ofctl("add-flows", "-O", "OpenFlow10", "br-int", "-",
                  stdin="table=0,priority=7,dl_type=0x0806,actions=normal\n")
        assert r.returncode == 0, r.stderr
        flows = subprocess.run(["ovs-ofctl", "dump-flows", "br-int"], capture_output=True, text=True,
                               env={**os.environ, **sim.switches[0].env()}).stdout
        assert "priority=7,arp actions=NORMAL" in flows  # in dom0's switch, not a local one
        assert ofctl("dump-flows", "no-such-bridge").returncode == 1
