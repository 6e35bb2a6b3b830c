"""Conformance of xapisim to XAPI's wire protocol and dispatcher, over both protocols."""
from __future__ import annotations

import time
import xmlrpc.client

import pytest
import XenAPI

from tests.conftest import PASSWORD, JsonRpc, sdk_call


def fails(fn, *args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as exc:
        fn(*args)
    return exc.value.details


def test_login_bad_password_gives_uname_and_message(sim):
    s = XenAPI.Session(sim.url)
    details = fails(s.xenapi.login_with_password, "root", "wrong", "2.21", "t")
    assert details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert details[1] == "root"
    assert PASSWORD not in " ".join(details)


def test_member_answers_host_is_slave_with_master_address(sim):
    member = sim.host_urls[1]
    s = XenAPI.Session(member)
    details = fails(s.xenapi.login_with_password, "root", PASSWORD, "2.21", "t")
    assert details == ["HOST_IS_SLAVE", "127.0.0.1"]


def test_ints_are_untyped_strings_on_xmlrpc_and_numbers_on_jsonrpc(client):
    vm = client("VM.get_all_records_where", 'field "is_control_domain"="true"')
    rec = next(iter(vm.values()))
    if client.protocol == "xmlrpc":
        assert rec["domid"] == "0" and isinstance(rec["memory_static_max"], str)
        assert isinstance(rec["is_control_domain"], bool)
    else:
        assert rec["domid"] == 0 and isinstance(rec["memory_static_max"], int)


def test_parameter_count_mismatch_counts_without_session(client):
    vms = client("VM.get_all")
    details = fails(client, "VM.get_record", vms[0], "extra")
    assert details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "2"]


def test_defaulted_parameters_may_be_omitted(sim):
    s = XenAPI.Session(sim.url)
    s.xenapi.login_with_password("root", PASSWORD)  # version and originator default
    assert s.xenapi.pool.get_all()


def test_unknown_message_and_invalid_handle(client):
    assert fails(client, "VM.no_such_message", "x") == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_message"]
    bad = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert fails(client, "VM.get_record", bad) == ["HANDLE_INVALID", "VM", bad]
    assert fails(client, "VM.get_by_uuid", "nope") == ["UUID_INVALID", "VM", "nope"]


def test_session_invalid_comes_before_unknown_message(sim):
    j = JsonRpc(sim.url)
    reply = j.raw("VM.no_such", ["OpaqueRef:bogus"])
    assert reply["error"]["message"] == "SESSION_INVALID"
    assert reply["error"]["code"] == 1 and reply["error"]["data"] == ["OpaqueRef:bogus"]


def test_jsonrpc_v1_error_shape(sim):
    j = JsonRpc(sim.url, version="1.0")
    reply = j.raw("session.login_with_password", ["root", "bad"])
    assert reply["result"] is None and reply["error"][0] == "SESSION_AUTHENTICATION_FAILED"


def test_no_async_mode_for_getters(client):
    vms = client("VM.get_all")
    details = fails(client, "Async.VM.get_record", vms[0])
    assert details[0] == "Fault" and "No async mode" in details[1]


def test_alternative_wire_name(client):
    assert client("VM_get_all") == client("VM.get_all")


def test_system_list_methods_is_bare_on_xmlrpc(sim):
    names = xmlrpc.client.ServerProxy(sim.url).system.listMethods()
    assert "VM.start" in names and "event.from" in names


def test_datetime_format(xapi):
    t = xapi.xenapi.host.get_servertime(xapi.xenapi.host.get_all()[0])
    assert isinstance(t, xmlrpc.client.DateTime)
    assert len(t.value) == 18 and t.value.endswith("Z") and t.value[8] == "T"


def test_get_all_records_where(client):
    templates = client("VM.get_all_records_where",
                       'field "is_a_template"="true" and not field "name_label"="Other install media"')
    names = {r["name_label"] for r in templates.values()}
    assert "Debian Bookworm 12" in names and "Other install media" not in names


def test_map_add_duplicate_key(client):
    vm = client("VM.get_by_name_label", "Other install media")[0]
    clone = client("VM.clone", vm, "x")
    client("VM.add_to_other_config", clone, "k", "v")
    details = fails(client, "VM.add_to_other_config", clone, "k", "w")
    assert details[0] == "MAP_DUPLICATE_KEY" and details[4] == "k"


def _new_vm(client, name="vm"):
    """What ``xe vm-install`` does: clone, point the disks at the default SR, provision."""
    tmpl = client("VM.get_by_name_label", "Debian Bookworm 12")[0]
    vm = client("VM.clone", tmpl, name)
    pool = client("pool.get_all")[0]
    sr_uuid = client("SR.get_uuid", client("pool.get_default_SR", pool))
    disks = client("VM.get_other_config", vm)["disks"].replace('sr=""', f'sr="{sr_uuid}"')
    client("VM.remove_from_other_config", vm, "disks")
    client("VM.add_to_other_config", vm, "disks", disks)
    client("VM.provision", vm)
    return vm


def test_power_state_machine(client):
    vm = _new_vm(client)
    client("VM.start", vm, False, False)
    assert client("VM.get_power_state", vm) == "Running"
    assert fails(client, "VM.start", vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    client("VM.pause", vm)
    assert fails(client, "VM.suspend", vm) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
    client("VM.unpause", vm)
    client("VM.suspend", vm)
    assert client("VM.get_suspend_VDI", vm) != "OpaqueRef:NULL"
    client("VM.resume", vm, False, False)
    client("VM.clean_reboot", vm)
    client("VM.hard_shutdown", vm)
    assert client("VM.get_power_state", vm) == "Halted"
    assert "start" in client("VM.get_allowed_operations", vm)


def test_template_cannot_start(client):
    tmpl = client("VM.get_by_name_label", "Debian Bookworm 12")[0]
    details = fails(client, "VM.start", tmpl, False, False)
    assert details == ["VM_IS_TEMPLATE", tmpl, "start"]


def test_not_enough_memory(client):
    vm = _new_vm(client)
    big = str(64 << 30) if client.protocol == "xmlrpc" else 64 << 30
    client("VM.set_memory_limits", vm, big, big, big, big)
    details = fails(client, "VM.start", vm, False, False)
    assert details[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert int(details[1]) > int(details[2])


def test_async_task_and_event_from(xapi):
    x = xapi.xenapi
    vm = _new_vm(lambda m, *a: sdk_call(x, m, *a))
    task = x.Async.VM.start(vm, False, False)
    token = ""
    status = None
    deadline = time.time() + 10
    while status not in ("success", "failure") and time.time() < deadline:
        batch = x.event_from([f"task/{task}"], token, 5.0)
        token = batch["token"]
        assert isinstance(batch["valid_ref_counts"]["vm"], int)
        for ev in batch["events"]:
            assert ev["class"] == "task" and ev["ref"] == task
            status = ev["snapshot"]["status"]
    assert status == "success"
    rec = x.task.get_record(task)
    assert rec["result"] == "<value></value>" and rec["progress"] == 1.0
    assert rec["name_label"] == "Async.VM.start"


def test_event_from_times_out_empty_and_reports_del(xapi):
    x = xapi.xenapi
    first = x.event_from(["vm"], "", 0.0)
    assert all(e["operation"] == "add" for e in first["events"])
    t0 = time.time()
    empty = x.event_from(["vm"], first["token"], 0.3)
    assert empty["events"] == [] and time.time() - t0 >= 0.25
    vm = _new_vm(lambda m, *a: sdk_call(x, m, *a))
    token = x.event_from(["vm"], empty["token"], 1.0)["token"]
    x.VM.destroy(vm)
    dels = x.event_from(["vm"], token, 1.0)["events"]
    assert any(e["operation"] == "del" and e["ref"] == vm and "snapshot" not in e for e in dels)


def test_bad_event_subscription_and_token(xapi):
    assert fails(xapi.xenapi.event_from, ["nosuchclass"], "", 0.0)[0] == \
        "EVENT_SUBSCRIPTION_PARSE_FAILURE"
    assert fails(xapi.xenapi.event_from, ["vm"], "garbage", 0.0)[0] == \
        "EVENT_FROM_TOKEN_PARSE_FAILURE"


def test_logout_invalidates_session(sim):
    s = XenAPI.Session(sim.url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "t")
    ref = s._session
    s.xenapi.session.logout()
    j = JsonRpc(sim.url)
    assert j.raw("VM.get_all", [ref])["error"]["message"] == "SESSION_INVALID"



def test_messages_as_xapi_message_ml_keeps_them(client):
    """xapi_message.ml: create needs the object, listings newest first, filters by time."""
    host = client("host.get_all")[0]
    host_uuid = client("host.get_uuid", host)
    assert fails(client, "message.create", "X", "1", "VM", host_uuid, "b") == \
        ["UUID_INVALID", "VM", host_uuid]
    prio = "5" if client.protocol == "xmlrpc" else 5
    first = client("message.create", "HA_POOL_OVERCOMMITTED", prio, "Host", host_uuid, "one")
    second = client("message.create", "VM_STARTED", prio, "Pool",
                    client("pool.get_uuid", client("pool.get_all")[0]), "two")
    rec = client("message.get_record", first)
    assert rec["name"] == "HA_POOL_OVERCOMMITTED" and rec["obj_uuid"] == host_uuid
    assert rec["cls"] == "Host" and int(rec["priority"]) == 5
    assert set(client("message.get_all")) >= {first, second}
    assert client("message.get_by_uuid", rec["uuid"]) == first
    assert fails(client, "message.get_by_uuid", "nope") == ["UUID_INVALID", "message", "nope"]
    mine = client("message.get", "Host", host_uuid, "19700101T00:00:00Z")
    assert list(mine) == [first]
    assert client("message.get_since", "29990101T00:00:00Z") == {}
    where = client("message.get_all_records_where", 'field "name" = "VM_STARTED"')
    assert list(where) == [second]
    client("message.destroy_many", [first, second])
    assert first not in client("message.get_all")


def test_small_vm_host_and_session_messages(client):
    vm = _new_vm(client, "small")
    assert client("VM.assert_operation_valid", vm, "start") == ""
    assert fails(client, "VM.assert_operation_valid", vm, "pause")[0] == "VM_BAD_POWER_STATE"
    assert client("VM.get_cooperative", vm) is True
    client("VM.set_actions_after_crash", vm, "destroy")
    assert client("VM.get_actions_after_crash", vm) == "destroy"
    assert fails(client, "VM.set_suspend_VDI", vm, "OpaqueRef:NULL")[0] == "VM_BAD_POWER_STATE"
    host = client("host.get_all")[0]
    pif = client("host.get_management_interface", host)
    assert client("PIF.get_management", pif) is True and client("PIF.get_host", pif) == host
    assert client("session.get_all_subject_identifiers") == []
    assert client("host.get_sched_gran", host) == "cpu"
