"""xapisim's calls per second for VM.get_record, next to the standard library's XML-RPC server.

Both servers run in processes of their own:

* xapisim: ``xapisim serve`` (one host), answering ``VM.get_record`` of the
  control domain over XML-RPC;
* baseline: the standard library's ``SimpleXMLRPCServer`` with
  ``ThreadingMixIn`` (a thread per connection, HTTP/1.1 keep-alive as the
  XenAPI SDK uses it), answering the same record, fetched from xapisim
  first, in the same ``{Status, Value}`` envelope.

The load comes from client processes (1, then 16 connections, one process
each), so no client's GIL bounds the server.  Each client sends a request
it encoded once and reads the whole response without decoding it, over one
keep-alive connection, as a load generator does; so the numbers are the
servers' own cost per call.  Each rate is the best of ``--rounds`` rounds.

It also prints ``event.from`` latency (a field set, then the event seen by a
blocked ``event.from``), which should stay near xapi's batching delay.

Run: ``.venv/bin/python benchmarks/rpc_throughput.py [--calls N] [--rounds R]``
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from loopback import free_port  # noqa: E402

PASSWORD = "pw"

BASELINE_SERVER = r"""
import sys, xmlrpc.client
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

class Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as XenAPI's transport uses it

class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True

(record,), _ = xmlrpc.client.loads(open(sys.argv[2], "rb").read())
server = Server(("127.0.0.1", int(sys.argv[1])), Handler, logRequests=False)
server.register_function(lambda session, ref: {"Status": "Success", "Value": record},
                         "VM.get_record")
print("ready", flush=True)
server.serve_forever()
"""


def _request(path_host: str, body: bytes) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: {path_host}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _client(port: int, request: bytes, calls: int, barrier, results) -> None:
    """One connection sending ``request`` ``calls`` times, reading each whole answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def answer() -> bytes:
        nonlocal buf
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(buf) < length:
            buf += sock.recv(max(65536, length - len(buf)))
        body, buf = buf[:length], buf[length:]
        return body

    sock.sendall(request)
    first = answer()
    ok = b"Success" in first
    barrier.wait()
    t = time.perf_counter()
    for _ in range(calls):
        sock.sendall(request)
        answer()
    results.put((ok, time.perf_counter() - t))
    sock.close()


def rate(port: int, request: bytes, n_clients: int, calls: int) -> float:
    """Calls per second with ``n_clients`` client processes, one connection each."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n_clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, request, calls, barrier, results))
             for _ in range(n_clients)]
    for p in procs:
        p.start()
    barrier.wait()
    t = time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - t
    for p in procs:
        p.join()
    if not all(ok for ok, _ in outcomes):
        raise RuntimeError("a server did not answer the call with Success")
    return n_clients * calls / elapsed


def event_latency(url: str, vm: str) -> float:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
    token = s.xenapi.event_from(["vm"], "", 0.0)["token"]
    samples = []
    for i in range(20):
        t = time.perf_counter()
        s.xenapi.VM.set_name_description(vm, str(i))
        token = s.xenapi.event_from([f"vm/{vm}"], token, 5.0)["token"]
        samples.append(time.perf_counter() - t)
    s.xenapi.session.logout()
    return sorted(samples)[len(samples) // 2]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start listening")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500, help="calls per client and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sim_port, base_port = free_port(), free_port()
        sim = subprocess.Popen([sys.executable, "-m", "xapisim", "serve", "--port", str(sim_port),
                                "--password", PASSWORD, "--state-dir", f"{tmp}/state",
                                "--auth-failure-delay", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = None
        try:
            _wait_listening(sim_port, sim)
            url = f"http://127.0.0.1:{sim_port}"
            s = XenAPI.Session(url)
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
            vm = s.xenapi.VM.get_all()[0]
            record = s.xenapi.VM.get_record(vm)
            with open(f"{tmp}/record.xml", "w") as f:
                f.write(xmlrpc.client.dumps((record,)))
            base = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(base_port),
                                     f"{tmp}/record.xml"], stdout=subprocess.PIPE)
            base.stdout.readline()
            body = xmlrpc.client.dumps((s._session, vm), "VM.get_record").encode()
            sim_req = _request(f"127.0.0.1:{sim_port}", body)
            base_req = _request(f"127.0.0.1:{base_port}", body)
            print(f"VM.get_record over XML-RPC ({len(xmlrpc.client.dumps(({'Value': record},)))} "
                  f"byte answer), {args.calls} calls per client, best of {args.rounds}:")
            for n in (1, 16):
                sim_rate = max(rate(sim_port, sim_req, n, args.calls) for _ in range(args.rounds))
                base_rate = max(rate(base_port, base_req, n, args.calls) for _ in range(args.rounds))
                print(f"  {n:2d} client(s): xapisim {sim_rate:7.0f} calls/s, stdlib threading "
                      f"XML-RPC server {base_rate:7.0f} calls/s  ({sim_rate / base_rate:.2f}x)")
            print(f"event.from latency (set -> event, median): {event_latency(url, vm) * 1000:.1f} ms")
            s.xenapi.session.logout()
        finally:
            for p in (sim, base):
                if p is not None:
                    p.terminate()
                    p.wait()


if __name__ == "__main__":
    main()
