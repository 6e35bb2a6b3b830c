"""xapisim's HTTP front under hostile or clumsy clients: many connections at once, clients that
stall halfway through a request, oversized and garbage bodies.  It answers what xapi would
(or closes), never stops serving others, and its state is intact afterwards."""
from __future__ import annotations

import random
import socket
import threading
import xmlrpc.client


def _post(body: bytes) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _state(rpc_session) -> tuple:
    x = rpc_session.xenapi
    return (sorted(x.VM.get_all()), sorted(x.VDI.get_all()), sorted(x.SR.get_all()))


def test_hundreds_of_connections_at_once_are_all_answered(rpc_sim, rpc_session):
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    socks = [socket.create_connection(("127.0.0.1", rpc_sim.port), timeout=30) for _ in range(300)]
    try:
        for s in socks:
            s.sendall(_post(body))
        answers = [_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(a.startswith(b"HTTP/1.1 200 ") and b"Success" in a for a in answers)


def test_a_client_stalled_halfway_holds_up_nobody(rpc_sim, rpc_session):
    before = _state(rpc_session)
    body = xmlrpc.client.dumps((rpc_session._session,), "VM.get_all").encode()
    stalled = []
    for cut in (10, len(_post(body)) - 5):  # inside the head, then inside the body
        s = socket.create_connection(("127.0.0.1", rpc_sim.port), timeout=30)
        s.sendall(_post(body)[:cut])
        stalled.append(s)
    done = []
    t = threading.Thread(target=lambda: done.append(_state(rpc_session)))
    t.start()
    t.join(10)
    assert done == [before]
    for s in stalled:
        s.close()
    assert _state(rpc_session) == before


def test_an_oversized_body_is_refused_with_413(rpc_sim, rpc_session):
    before = _state(rpc_session)
    with socket.create_connection(("127.0.0.1", rpc_sim.port), timeout=30) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 65536)
        assert _answer(s).startswith(b"HTTP/1.1 413 ")
    assert _state(rpc_session) == before


def test_garbage_bodies_get_errors_and_change_nothing(rpc_sim, rpc_session):
    before = _state(rpc_session)
    rng = random.Random(1234)
    valid = xmlrpc.client.dumps((rpc_session._session, "x"), "VM.get_by_uuid").encode()
    for i in range(60):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        elif i % 3 == 1:  # a valid call with bytes flipped
            body = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        else:  # a valid call cut short
            body = valid[:rng.randrange(len(valid))]
        with socket.create_connection(("127.0.0.1", rpc_sim.port), timeout=30) as s:
            s.sendall(_post(body))
            answer = _answer(s)
        assert answer == b"" or answer.split(b" ")[1] in (b"200", b"400", b"500"), answer[:200]
    assert _state(rpc_session) == before
