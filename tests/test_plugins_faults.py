"""host.call_plugin as xapi runs plugins, fault injection, and persistence."""
from __future__ import annotations

import json
import os
import stat
import sys
import time
import urllib.error
import urllib.request

import pytest
import XenAPI

from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs

ECHO = f"""#!{sys.executable}
import sys, xmlrpc.client
params, name = xmlrpc.client.loads(sys.argv[1])
session, args = params
if name == "boom":
    print(xmlrpc.client.dumps(({{"Status": "Failure",
          "ErrorDescription": ["XENAPI_PLUGIN_FAILURE", name, "ValueError", "bad"]}},),
          methodresponse=True))
elif name == "crash":
    sys.exit(3)
else:
    print(xmlrpc.client.dumps(({{"Status": "Success", "Value": name + ":" + args["x"]}},),
          methodresponse=True))
"""


def _install(sim, name="echo"):
    d = sim.backend.dom0_root(sim.backend.master_ref) / "etc/xapi.d/plugins"
    p = d / name
    p.write_text(ECHO)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def test_call_plugin_success_failure_crash_and_missing(sim, xapi):
    _install(sim)
    x = xapi.xenapi
    host = x.host.get_all()[0]
    assert x.host.call_plugin(host, "echo", "hi", {"x": "1"}) == "hi:1"
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(host, "echo", "boom", {"x": "1"})
    assert e.value.details == ["XENAPI_PLUGIN_FAILURE", "boom", "ValueError", "bad"]
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(host, "echo", "crash", {"x": "1"})
    assert e.value.details[:1] == ["XENAPI_PLUGIN_FAILURE"] and e.value.details[1] == "non-zero exit"
    for bad in ("../echo", "nosuch", "", "/etc/passwd"):
        with pytest.raises(XenAPI.Failure) as e:
            x.host.call_plugin(host, bad, "hi", {})
        assert e.value.details == ["XENAPI_MISSING_PLUGIN", bad]


def test_fault_injection_error_and_drop(sim, xapi):
    x = xapi.xenapi
    sim.faults.add("VM.get_all", "error", error=["HOST_OFFLINE", "OpaqueRef:x"], count=1)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.get_all()
    assert e.value.details == ["HOST_OFFLINE", "OpaqueRef:x"]
    assert x.VM.get_all()  # fired once only
    # count 2: xmlrpc.client retries once on a dropped keep-alive connection
    body = json.dumps({"match": "pool.get_all", "action": "drop", "count": 2}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{sim.url}/_xapisim/faults", data=body))
    with pytest.raises(Exception):  # noqa: B017 - the connection is closed without reply
        x.pool.get_all()


def test_an_error_fault_without_a_code_is_one_xapi_could_give(sim, xapi):
    x = xapi.xenapi
    vm = x.VM.get_all()[0]
    sr = x.SR.get_all()[0]
    cases = [
        # documented in the datamodel: its first error, the VM's ref where a VM is named
        ("VM.clean_shutdown", lambda: x.VM.clean_shutdown(vm),
         ["VM_BAD_POWER_STATE", vm, "injected", "injected"]),
        # storage says what SM says
        ("SR.scan", lambda: x.SR.scan(sr), ["SR_BACKEND_FAILURE_47", "",
                                            "The SR is not available [opterr=injected]", ""]),
        ("VM.get_power_state", lambda: x.VM.get_power_state(vm),
         ["INTERNAL_ERROR", "injected into VM.get_power_state"]),
        ("VM.get_all", x.VM.get_all, ["INTERNAL_ERROR", "injected into VM.get_all"]),
    ]
    for match, call, expected in cases:
        sim.faults.add(match, "error")
        with pytest.raises(XenAPI.Failure) as e:
            call()
        assert e.value.details == expected


def test_an_error_fault_on_an_async_call_fails_its_task(sim, xapi):
    # xapi answers an Async call with a task at once; the operation's failure is the task's
    x = xapi.xenapi
    sr = x.SR.get_all()[0]
    sim.faults.add("SR.scan", "error", error=["SR_BACKEND_FAILURE_44", "", "full", ""])
    task = x.Async.SR.scan(sr)
    deadline = time.monotonic() + 10
    while x.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert x.task.get_status(task) == "failure"
    assert x.task.get_error_info(task) == ["SR_BACKEND_FAILURE_44", "", "full", ""]
    x.task.destroy(task)


def test_expired_sessions_are_relogged_by_sdk(sim, xapi):
    x = xapi.xenapi
    old = xapi._session
    sim.faults.add("VM.get_all", "expire_sessions")
    assert x.VM.get_all()  # the SDK logs in again on SESSION_INVALID and retries
    assert xapi._session != old


def test_state_survives_restart(tmp_path):
    state = tmp_path / "s"
    config = SimConfig(password=PASSWORD, hosts=host_configs(1), auth_failure_delay=0.0)
    with Simulator(config, state) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD)
        tmpl = s.xenapi.VM.get_by_name_label("Other install media")[0]
        vm = s.xenapi.VM.clone(tmpl, "persisted")
    with Simulator(config, state) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD)
        assert s.xenapi.VM.get_name_label(vm) == "persisted"
    assert os.path.exists(state / "db.json")


def test_tls_with_pinned_ca(tmp_path):
    import ssl

    config = SimConfig(password=PASSWORD, hosts=host_configs(1), auth_failure_delay=0.0)
    with Simulator(config, tmp_path, tls=True) as sim:
        assert sim.url.startswith("https://")
        plain = XenAPI.Session(sim.url)
        with pytest.raises(ssl.SSLError):
            plain.xenapi.login_with_password("root", PASSWORD)
        ctx = ssl.create_default_context(cafile=str(sim.certificate))
        import xmlrpc.client
        s = XenAPI.Session(sim.url, transport=xmlrpc.client.SafeTransport(context=ctx))
        s.xenapi.login_with_password("root", PASSWORD)
        assert s.xenapi.host.get_all()


def test_call_recording_over_http(sim, xapi):
    """POST /_xapisim/calls starts recording, GET reads it so far, DELETE stops and returns it."""
    x = xapi.xenapi

    def control(method: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{sim.url}/_xapisim/calls", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert control("GET")[0] == 409  # not recording yet
    assert control("POST") == (200, {"calls": []})
    x.VM.get_all()
    x.host.get_all()
    assert control("GET") == (200, {"calls": ["VM.get_all", "host.get_all"]})
    x.pool.get_all()
    assert control("DELETE") == (200, {"calls": ["VM.get_all", "host.get_all", "pool.get_all"]})
    assert control("DELETE")[0] == 409


def test_move_master_fault_moves_the_pool_master_and_answers_host_is_slave(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 4096, 2), auth_failure_delay=0)
    with Simulator(config, tmp_path / "s") as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "t")
        x = s.xenapi
        sim.faults.add("VM.get_all", "move_master")
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.get_all()
        assert e.value.details == ["HOST_IS_SLAVE", "127.0.0.2"]
        assert sim.backend.master_address() == "127.0.0.2"
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.get_all()  # the old master is a slave now
        assert e.value.details[0] == "HOST_IS_SLAVE"
