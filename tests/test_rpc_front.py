"""xapisim's RPC loop over real sockets: what a client sees is what the thread-per-connection
front gave, whatever it sends and however it sends it."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator


def _post(body: bytes, path: str = "/", extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return (f"POST {path} {version}\r\nHost: x\r\nContent-Type: text/xml\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _read_answer(sock: socket.socket, buf: bytearray) -> bytes:
    """One whole HTTP answer from ``sock`` (``buf`` keeps what follows it)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(rest) < n:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        rest += data
    buf[:] = rest[n:]
    return head + b"\r\n\r\n" + rest[:n]


def _value(answer: bytes):
    (out,), _ = xmlrpc.client.loads(answer.partition(b"\r\n\r\n")[2])
    return out


def _connect(rpc_sim) -> socket.socket:
    return socket.create_connection(("127.0.0.1", rpc_sim.port), timeout=10)


def test_answers_match_the_thread_per_connection_handler_byte_for_byte(rpc_sim, rpc_session):
    vm = rpc_session.xenapi.VM.get_all()[0]
    body = xmlrpc.client.dumps((rpc_session._session, vm), "VM.get_record").encode()
    answers = []
    # "/" is the loop's; "/?q" is no RPC path of its, so the classic handler routes it to "/"
    for path in ("/", "/?q"):
        with _connect(rpc_sim) as s:
            s.sendall(_post(body, path=path))
            answers.append(_read_answer(s, bytearray()))
    no_date = [re.sub(rb"Date: [^\r]*", b"", a) for a in answers]
    assert no_date[0] == no_date[1]
    assert _value(answers[0])["Status"] == "Success"


def test_pipelined_calls_are_answered_in_order_quick_or_not(rpc_sim, rpc_session):
    sid = rpc_session._session
    vm = rpc_session.xenapi.VM.get_all()[0]
    token = rpc_session.xenapi.event_from(["vm"], "", 0.0)["token"]
    calls = [xmlrpc.client.dumps((sid, vm), "VM.get_uuid"),
             xmlrpc.client.dumps((sid, ["vm"], token, 0.3), "event.from"),  # blocks, in a thread
             xmlrpc.client.dumps((sid, vm), "VM.get_name_label")]
    with _connect(rpc_sim) as s:
        s.sendall(b"".join(_post(c.encode()) for c in calls))
        buf = bytearray()
        got = [_value(_read_answer(s, buf))["Value"] for _ in calls]
    assert got[0] == rpc_session.xenapi.VM.get_uuid(vm)
    assert "token" in got[1]
    assert got[2] == rpc_session.xenapi.VM.get_name_label(vm)


def test_a_blocked_call_does_not_hold_up_other_connections(rpc_sim, rpc_session):
    token = rpc_session.xenapi.event_from(["vm"], "", 0.0)["token"]
    waiter = XenAPI.Session(rpc_sim.url)
    waiter.xenapi.login_with_password("root", PASSWORD, "2.21", "waiter")
    done = threading.Event()
    t = threading.Thread(target=lambda: (waiter.xenapi.event_from(["pool"], token, 3.0), done.set()))
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    for _ in range(50):
        rpc_session.xenapi.VM.get_all()
    assert time.monotonic() - started < 2.0 and not done.is_set()
    t.join()
    waiter.xenapi.session.logout()


def test_folded_and_repeated_headers_are_read_as_the_classic_handler_reads_them(rpc_sim, rpc_session):
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    with _connect(rpc_sim) as s:
        s.sendall(_post(body, extra="X-Folded: a\r\n b\r\nConnection: close\r\nConnection: keep-alive\r\n"))
        assert _value(_read_answer(s, bytearray()))["Status"] == "Success"
        assert s.recv(1) == b""  # the first Connection header counts: closed


def test_a_request_trickling_in_byte_by_byte(rpc_sim, rpc_session):
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    with _connect(rpc_sim) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in _post(body):
            s.send(bytes([b]))
        assert _value(_read_answer(s, bytearray()))["Status"] == "Success"


def test_http_1_0_and_connection_close_are_answered_then_closed(rpc_sim, rpc_session):
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    for request in (_post(body, version="HTTP/1.0"), _post(body, extra="Connection: close\r\n")):
        with _connect(rpc_sim) as s:
            s.sendall(request)
            _read_answer(s, bytearray())
            assert s.recv(1) == b""


def test_json_rpc_and_http_handlers_share_a_keep_alive_connection(rpc_sim, rpc_session):
    sid = rpc_session._session
    with _connect(rpc_sim) as s:
        buf = bytearray()
        j = json.dumps({"jsonrpc": "2.0", "method": "VM.get_all", "params": [sid], "id": 1}).encode()
        s.sendall(_post(j, path="/jsonrpc"))
        assert b'"result"' in _read_answer(s, buf)
        # an HTTP handler on the same connection goes to the classic handler, with what was read
        s.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 403 ")


def test_a_malformed_body_gets_xapis_error_page(rpc_sim):
    with _connect(rpc_sim) as s:
        s.sendall(_post(b"<methodCall><oops"))
        assert _read_answer(s, bytearray()).startswith(b"HTTP/1.1 500 ")


def test_a_dropped_call_closes_only_its_connection(rpc_sim, rpc_session):
    rpc_sim.faults.add("VM.get_all", "drop", count=5)  # the SDK tries a dropped call again
    try:
        with pytest.raises((ConnectionError, OSError, xmlrpc.client.ProtocolError)):
            dropped = XenAPI.Session(rpc_sim.url)
            dropped.xenapi.login_with_password("root", PASSWORD, "2.21", "drop")
            dropped.xenapi.VM.get_all()
    finally:
        rpc_sim.faults.clear()
    assert rpc_session.xenapi.VM.get_all()


def test_stopping_closes_idle_connections():
    with Simulator(SimConfig(password=PASSWORD)) as rpc_sim:
        s = _connect(rpc_sim)
        body = xmlrpc.client.dumps(("x",), "VM.get_all").encode()
        s.sendall(_post(body))
        _read_answer(s, bytearray())
    assert s.recv(1) == b""
    s.close()


def test_an_unexpected_error_drops_one_connection_and_the_loop_goes_on(rpc_sim, rpc_session, monkeypatch):
    from xapisim import rpc_front
    real, failed = rpc_front.answer, []

    def broken_once(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise RuntimeError("a bug in the simulator")
        return real(*args, **kwargs)

    monkeypatch.setattr(rpc_front, "answer", broken_once)
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    with _connect(rpc_sim) as s:
        s.sendall(_post(body))
        assert s.recv(100) == b""  # this connection is dropped...
    assert failed and rpc_session.xenapi.VM.get_all()  # ...and the loop serves the next call
