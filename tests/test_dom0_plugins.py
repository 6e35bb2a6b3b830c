"""The dom0 plugins, run as xapi runs them: by xapisim's host.call_plugin and straight from argv."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import xmlrpc.client
import zlib
from pathlib import Path

import pytest
import XenAPI

from nova_xenapi.dom0 import PLUGIN_API_VERSION, PLUGIN_DIR
from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs
from xapisim.inventory import DOM0_LIB

HOSTILE_DOM_IDS = ["../../etc/passwd", "1; rm -rf /", "0", "-1", "1e3", " 7", "7\n", "9" * 30, ""]


def _failure(fn, *args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_version_matches_the_driver(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    assert x.host.call_plugin(host, "nova_plugin_version.py", "get_version", {}) == PLUGIN_API_VERSION
    assert _failure(x.host.call_plugin, host, "nova_plugin_version.py", "nope", {}) == \
        ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"]
    assert _failure(x.host.call_plugin, host, "dom0_pluginlib.py", "x", {})[0] == "XENAPI_MISSING_PLUGIN"


def test_console_log_of_a_running_guest(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    vm = diskless_vm(x, "talker")
    x.VM.start(vm, False, False)
    domid = x.VM.get_domid(vm)
    out = x.host.call_plugin(host, "console.py", "get_console_log", {"dom_id": domid})
    assert b"talker login:" in zlib.decompress(base64.b64decode(out))
    assert _failure(x.host.call_plugin, host, "console.py", "get_console_log",
                    {"dom_id": "4242"}) == ["NO_CONSOLE_LOG", "4242"]


@pytest.mark.parametrize("dom_id", HOSTILE_DOM_IDS)
def test_console_refuses_hostile_arguments(plugged, dom_id):
    sim, x = plugged
    host = x.host.get_all()[0]
    details = _failure(x.host.call_plugin, host, "console.py", "get_console_log", {"dom_id": dom_id})
    assert details[0] == "INVALID_ARGUMENT" and details[1] == "dom_id"


def test_missing_argument_is_named(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    assert _failure(x.host.call_plugin, host, "console.py", "get_console_log", {}) == \
        ["MISSING_ARGUMENT", "dom_id"]


def test_a_plugin_run_straight_from_argv_as_xapi_runs_it(tmp_path):
    """No simulator: argv[1] is the XML-RPC call, stdout the XML-RPC answer."""
    root = tmp_path / "dom0"
    (root / "var/log/xen/guest").mkdir(parents=True)
    (root / "var/log/xen/guest/console.5").write_bytes(b"x" * 200000 + b"END")
    env = {**os.environ, "XAPISIM_DOM0_ROOT": str(root),
           "PYTHONPATH": os.pathsep.join([str(DOM0_LIB), str(PLUGIN_DIR)])}
    call = xmlrpc.client.dumps(("OpaqueRef:session", {"dom_id": "5"}), "get_console_log")
    out = subprocess.run([sys.executable, str(PLUGIN_DIR / "console.py"), call], env=env,
                         capture_output=True, check=True).stdout
    (answer,), _ = xmlrpc.client.loads(out)
    assert answer["Status"] == "Success"
    log = zlib.decompress(base64.b64decode(answer["Value"]))
    assert log.endswith(b"END") and len(log) == 102400  # only the tail


def test_plugins_need_no_python_newer_than_the_dom0s():
    """XenServer 8 / XCP-ng 8.3 dom0s run Python 3.6: vermin proves the plugins need no more."""
    files = [str(p) for p in Path(PLUGIN_DIR).glob("*.py")]
    vermin = Path(sys.executable).parent / "vermin"
    out = subprocess.run([str(vermin), "--no-tips", "-t=3.6-", "--violations",
                          *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_plugin_versions_agree():
    text = (PLUGIN_DIR / "dom0_pluginlib.py").read_text()
    assert f'PLUGIN_API_VERSION = "{PLUGIN_API_VERSION}"' in text


def test_the_driver_refuses_a_mismatched_plugin_set(tmp_path):
    from nova_xenapi import plugins
    from nova_xenapi.session import XenAPISession
    major, minor = (int(p) for p in PLUGIN_API_VERSION.split("."))
    cases = [([], False), ([str(PLUGIN_DIR)], True)]
    # an older major, a set that lacks plugins this driver calls, a newer compatible set
    for version, expect in ((f"{major - 1}.9", False), (f"{major}.{minor - 1}", False),
                            (f"{major}.{minor + 1}", True), ("junk", False)):
        old = tmp_path / f"plugins-{version}"
        old.mkdir()
        (old / "nova_plugin_version.py").write_text(
            "#!/usr/bin/env python3\nimport XenAPIPlugin\n"
            f"XenAPIPlugin.dispatch({{'get_version': lambda session, args: '{version}'}})\n")
        (old / "nova_plugin_version.py").chmod(0o755)
        cases.append(([str(old)], expect if expect else version))
    for n, (dirs, expect) in enumerate(cases):
        config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), plugin_dirs=dirs)
        with Simulator(config, tmp_path / f"s{n}") as sim:
            session = XenAPISession(sim.url, "root", PASSWORD)
            if isinstance(expect, bool):
                assert plugins.check_version(session) is expect
            else:
                with pytest.raises(plugins.PluginsMismatch,
                                   match=f"version {expect}, .*needs {PLUGIN_API_VERSION} or a "
                                   "later minor.*xenapi-bootstrap"):
                    plugins.check_version(session)


@pytest.mark.parametrize("args,code", [
    ({"dev": "../etc/passwd", "filename": "k", "length": "1", "max_size": "10"}, "INVALID_ARGUMENT"),
    ({"dev": "xvdb", "filename": "../../etc/cron.d/x", "length": "1", "max_size": "10"},
     "INVALID_ARGUMENT"),
    ({"dev": "xvdb", "filename": ".hidden", "length": "1", "max_size": "10"}, "INVALID_ARGUMENT"),
    ({"dev": "xvdb", "filename": "k", "length": "11", "max_size": "10"}, "KERNEL_TOO_LARGE"),
    ({"dev": "xvdb", "filename": "k", "length": "-1", "max_size": "10"}, "INVALID_ARGUMENT"),
])
def test_kernel_copy_refuses_hostile_arguments(plugged, args, code):
    sim, x = plugged
    host = x.host.get_all()[0]
    assert _failure(x.host.call_plugin, host, "kernel.py", "copy_vdi", args)[0] == code


def test_kernel_removal_stays_in_boot_guest(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    for bad in ("/etc/passwd", "/boot/guest/../../etc/passwd", "/boot/guest/a/b"):
        assert _failure(x.host.call_plugin, host, "kernel.py", "remove_kernel_ramdisk",
                        {"kernel-file": bad})[0] == "INVALID_ARGUMENT"


def test_host_uptime_is_dom0s_uptime_output(plugged):
    sim, x = plugged
    host = x.host.get_all()[0]
    out = x.host.call_plugin(host, "xenhost.py", "host_uptime", {})
    assert " up " in out and "load average" in out
