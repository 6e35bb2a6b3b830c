"""xapi's HTTP front: prefix routing, how a handler finds its session, and task_id everywhere.

Sources: ``ocaml/libs/http-lib/http_svr.ml`` (``Radix_tree.longest_prefix``;
no match -> ``default_callback`` = 403; a method with no handlers -> 501),
``ocaml/xapi/xapi_http.ml`` (``session_id`` from the cookie before the query,
then HTTP Basic; ``Unauthorised`` -> 401 with ``WWW-Authenticate: Basic
realm=<label>`` and the caller's task failed with
SESSION_AUTHENTICATION_FAILED; an Authorization header that is not Basic ->
500), ``ocaml/xapi/fileserver.ml`` (GET of a missing file: 404 over HTTPS,
refused over plain HTTP as ``website_https_only`` is true by default) and
``ocaml/idl/datamodel.ml`` ``http_actions`` (the handler table).
"""
from __future__ import annotations

import base64
import http.client
import io
import ssl
import tarfile
import time
import urllib.parse

import pytest
import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator

MIB = 1 << 20


def request(sim, method, path, body=None, headers=None, tls_context=None):
    if tls_context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=tls_context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", sim.port)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def new_vdi(x, size=4 * MIB):
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    return x.VDI.create({"name_label": "h", "name_description": "", "SR": sr,
                         "virtual_size": str(size), "type": "user", "sharable": False,
                         "read_only": False, "other_config": {}})


def wait(x, task):
    for _ in range(500):
        if x.task.get_status(task) != "pending":
            break
        time.sleep(0.01)
    return x.task.get_record(task)


def test_trailing_slash_reaches_the_same_handler(sim, xapi):
    x = xapi.xenapi
    vdi = new_vdi(x)
    data = b"z" * MIB
    task = x.task.create("import", "")
    resp, _ = request(sim, "PUT", f"/import_raw_vdi/?session_id={xapi._session}&vdi={vdi}"
                      f"&task_id={task}", data, {"Content-Length": str(len(data))})
    assert resp.status == 200 and wait(x, task)["status"] == "success"
    resp, body = request(sim, "GET", f"/export_raw_vdi/?session_id={xapi._session}&vdi={vdi}")
    assert resp.status == 200 and body[:MIB] == data


def test_unknown_paths_and_methods(sim, xapi):
    assert request(sim, "PUT", "/no_such_handler", b"x", {"Content-Length": "1"})[0].status == 403
    assert request(sim, "GET", "/no/such/page")[0].status == 403  # plain HTTP: https only
    assert request(sim, "DELETE", "/import")[0].status == 501
    # POST "/" is the XML-RPC handler, so every POST path reaches it
    body = xmlrpc_call("session.get_this_host", xapi._session, xapi._session)
    resp, data = request(sim, "POST", "/some/other/path", body, {"Content-Type": "text/xml"})
    assert resp.status == 200 and b"Success" in data


def xmlrpc_call(name, *params):
    import xmlrpc.client
    return xmlrpc.client.dumps(params, name).encode()


def test_unknown_page_over_https_is_xapis_404(tmp_path):
    config = SimConfig(password=PASSWORD, auth_failure_delay=0.01)
    with Simulator(config, tmp_path / "tls", tls=True) as sim:
        ctx = ssl.create_default_context(cafile=str(sim.certificate))
        resp, body = request(sim, "GET", "/missing.html", tls_context=ctx)
        assert resp.status == 404
        assert b"The requested URL /missing.html was not found on this server." in body


def test_session_from_cookie_wins_over_query(sim, xapi):
    x = xapi.xenapi
    vdi = new_vdi(x)
    resp, _ = request(sim, "GET", f"/export_raw_vdi?session_id=OpaqueRef:bogus&vdi={vdi}",
                      headers={"Cookie": f"session_id={xapi._session}"})
    assert resp.status == 200
    resp, _ = request(sim, "GET", f"/export_raw_vdi?session_id={xapi._session}&vdi={vdi}",
                      headers={"Cookie": "session_id=OpaqueRef:bogus"})
    assert resp.status == 401


@pytest.mark.parametrize("path,label", [("/export_raw_vdi?vdi=x", "VDI.export_raw"),
                                        ("/export?uuid=x", "VM.export"),
                                        ("/export_metadata?uuid=x", "VM.export_metadata")])
def test_a_bad_session_is_401_with_xapis_realm_and_fails_the_task(sim, xapi, path, label):
    x = xapi.xenapi
    task = x.task.create("t", "")
    resp, body = request(sim, "GET", f"{path}&session_id=OpaqueRef:gone&task_id={task}")
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate") == f'Basic realm="{label}"'
    assert b"Please check your credentials and retry." in body
    rec = wait(x, task)
    assert rec["status"] == "failure" and rec["error_info"] == ["SESSION_AUTHENTICATION_FAILED"]


def test_no_credentials_and_bad_or_unknown_authorization(sim, xapi):
    vdi = new_vdi(xapi.xenapi)
    assert request(sim, "GET", f"/export_raw_vdi?vdi={vdi}")[0].status == 401
    bad = base64.b64encode(b"root:wrong").decode()
    resp, _ = request(sim, "GET", f"/export_raw_vdi?vdi={vdi}",
                      headers={"Authorization": f"Basic {bad}"})
    assert resp.status == 401
    resp, _ = request(sim, "GET", f"/export_raw_vdi?vdi={vdi}",
                      headers={"Authorization": "Bearer abc"})
    assert resp.status == 500


def test_basic_auth_logs_in_for_one_request_only(sim, xapi):
    x = xapi.xenapi
    vdi = new_vdi(x)
    sessions = sim.summary()["sessions"]
    good = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    resp, _ = request(sim, "GET", f"/export_raw_vdi?vdi={vdi}",
                      headers={"Authorization": f"Basic {good}"})
    assert resp.status == 200
    # the handler logs its session out once it has sent the body: allow it that moment
    for _ in range(200):
        if sim.summary()["sessions"] == sessions:
            break
        time.sleep(0.01)
    assert sim.summary()["sessions"] == sessions


def test_every_handler_reports_into_the_callers_task(sim, xapi):
    """task_id works on import_raw_vdi, export_raw_vdi, export, export_metadata, import(_metadata)."""
    x = xapi.xenapi
    sid = xapi._session
    vdi = new_vdi(x)
    vm = diskless_vm(x, "tasked")
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "unpluggable": False, "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    results = {}
    for method, path, body in (
            ("PUT", f"/import_raw_vdi?vdi={vdi}", b"a" * MIB),
            ("GET", f"/export_raw_vdi?vdi={vdi}", None),
            ("GET", f"/export?ref={vm}", None),
            ("GET", f"/export_metadata?ref={vm}", None)):
        task = x.task.create(path, "")
        resp, data = request(sim, method, f"{path}&session_id={sid}&task_id={task}", body,
                             {"Content-Length": str(len(body))} if body else {})
        assert resp.status == 200 and resp.getheader("task-id") == task, path
        results[path.split("?")[0]] = data
        assert wait(x, task)["status"] == "success", path
        x.task.destroy(task)
    xva = results["/export"]
    for path in ("/import", "/import_metadata"):
        task = x.task.create(path, "")
        data = xva if path == "/import" else results["/export_metadata"]
        resp, _ = request(sim, "PUT", f"{path}?session_id={sid}&task_id={task}", data,
                          {"Content-Length": str(len(data))})
        assert resp.status == 200 and resp.getheader("task-id") == task
        rec = wait(x, task)
        assert rec["status"] == "success", (path, rec["error_info"])
        assert rec["result"].startswith("<value><array>")
    assert tarfile.open(fileobj=io.BytesIO(results["/export_metadata"])).getnames() == ["ova.xml"]


def test_handler_errors_before_the_answer_fail_the_task(sim, xapi):
    x = xapi.xenapi
    task = x.task.create("export", "")
    q = urllib.parse.urlencode({"session_id": xapi._session, "uuid": "not-a-uuid",
                                "task_id": task})
    resp, _ = request(sim, "GET", f"/export?{q}")
    assert resp.status == 500
    assert wait(x, task)["error_info"] == ["UUID_INVALID", "VM", "not-a-uuid"]


def test_sessions_are_not_in_error_pages(sim, xapi):
    resp, body = request(sim, "GET", f"/export?session_id={xapi._session}&uuid=nope")
    assert xapi._session.encode() not in body
    with pytest.raises(XenAPI.Failure):
        xapi.xenapi.VM.get_by_uuid("nope")
