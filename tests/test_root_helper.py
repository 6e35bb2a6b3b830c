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
