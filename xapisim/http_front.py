"""The HTTP front of one simulated host: RPC endpoints and xapi's HTTP handlers.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per
connection, HTTP/1.1 keep-alive), which is enough for a simulator and adds no
dependency.  It only decodes and encodes; the backend holds all state.
"""
from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import struct
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import dispatcher, vdi_io
from .errors import HttpError, XapiError
from .faults import DropConnection
from .wire import jsonrpc as jwire
from .wire import xmlrpc as xwire

LOG = logging.getLogger(__name__)
MAX_RPC_SIZE = 300 * 1024


class HostServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], backend, host_ref: str, sim,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.backend = backend
        self.host_ref = host_ref
        self.sim = sim
        self.dispatcher = dispatcher.Dispatcher(backend, host_ref)
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def rehome(self, backend, host_ref: str) -> None:
        """This host now belongs to another pool (after pool.join or pool.eject)."""
        self.dispatcher = dispatcher.Dispatcher(backend, host_ref)
        self.backend = backend
        self.host_ref = host_ref

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def killed(self) -> bool:
        return self.server_address[0] in self.sim.faults.killed_hosts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes
    server: HostServer

    def log_message(self, fmt: str, *args) -> None:  # quiet; never log query strings
        LOG.debug("%s %s", self.command, self.path.split("?")[0])

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True

    def handle_one_request(self) -> None:
        if self.server.killed():
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except DropConnection:
            self.close_connection = True
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    # -- helpers ---------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error_page(self, status: int, text: str) -> None:
        body = f"<html><body><h1>HTTP {status}</h1>{text}</body></html>".encode()
        self._send(status, body, "text/html")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._error_page(411, "Content-Length required")
            self.close_connection = True
            return None
        try:
            n = int(length)
        except ValueError:
            self._error_page(400, "bad Content-Length")
            self.close_connection = True
            return None
        if n > MAX_RPC_SIZE or n < 0:
            self._error_page(413, "request too large")
            self.close_connection = True
            return None
        return self.rfile.read(n)

    def _drain_small_body(self, limit: int = 1 << 20) -> None:
        """Read a small rejected body so the client sees our answer, not a reset."""
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if 0 < n <= limit:
            self.rfile.read(n)

    def query(self) -> dict[str, str]:
        q = urllib.parse.urlparse(self.path).query
        return {k: v[-1] for k, v in urllib.parse.parse_qs(q, keep_blank_values=True).items()}

    # -- RPC ---------------------------------------------------------------
    def do_OPTIONS(self) -> None:
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "content-type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path.startswith("/_xapisim/"):
            return self._control("POST", path)
        body = self._read_body()
        if body is None:
            return
        if path in ("/", "/RPC2"):
            return self._xmlrpc(body)
        if path == "/jsonrpc":
            return self._jsonrpc(body)
        self._error_page(404, "not found")

    def _xmlrpc(self, body: bytes) -> None:
        try:
            name, params = xwire.parse_call(body)
        except xwire.RequestError as e:
            return self._error_page(500, str(e))
        if name == "system.listMethods":
            return self._send(200, xwire.bare(dispatcher.all_wire_names()), "text/xml")
        if name == "system.isAlive":
            return self._send(200, xwire.success(params[0] if params else ""), "text/xml")
        try:
            result = self.server.dispatcher.dispatch(name, params)
            out = xwire.success(result)
        except XapiError as e:
            out = xwire.failure(e.description)
        self._send(200, out, "text/xml")

    def _jsonrpc(self, body: bytes) -> None:
        try:
            name, params, req_id, v2 = jwire.parse_call(body)
        except jwire.RequestError as e:
            return self._error_page(500, str(e))
        if name == "system.listMethods":
            return self._send(200, jwire.success(dispatcher.all_wire_names(), req_id, v2),
                              "application/json")
        try:
            result = self.server.dispatcher.dispatch(name, params)
            out = jwire.success(result, req_id, v2)
        except XapiError as e:
            out = jwire.failure(e.description, req_id, v2)
        self._send(200, out, "application/json")

    # -- HTTP handlers -----------------------------------------------------
    def session_from_request(self) -> str | None:
        """The session of an HTTP handler call: query, cookie or Basic auth."""
        q = self.query()
        backend = self.server.backend
        sid = q.get("session_id")
        if sid is None:
            cookie = self.headers.get("Cookie", "")
            for part in cookie.split(";"):
                k, _, v = part.strip().partition("=")
                if k == "session_id":
                    sid = v
        if sid is not None:
            return sid if backend.session_valid(sid) else None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pwd = base64.b64decode(auth[6:]).decode().partition(":")
                return backend.login(backend.master_ref, user, pwd, "http-basic", pool=True)
            except (XapiError, ValueError, UnicodeDecodeError):
                return None
        return None

    def do_PUT(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path == "/import_raw_vdi":
            return self._handler(vdi_io.import_raw_vdi)
        self._error_page(404, "not found")

    def do_GET(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path.startswith("/_xapisim/"):
            return self._control("GET", path)
        if path == "/export_raw_vdi":
            return self._handler(vdi_io.export_raw_vdi)
        self._error_page(404, "not found")

    def do_DELETE(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path.startswith("/_xapisim/"):
            return self._control("DELETE", path)
        self._error_page(404, "not found")

    def _handler(self, fn) -> None:
        session = self.session_from_request()
        if session is None:
            self._drain_small_body()
            self._error_page(401, "Unauthorised")
            self.close_connection = True
            return
        try:
            fn(self, session)
        except HttpError as e:
            self._error_page(e.status, e.text)
            self.close_connection = True
        finally:
            if self.headers.get("Authorization", "").startswith("Basic ") and \
                    "session_id" not in self.query():
                self.server.backend.logout(session)

    def do_CONNECT(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path != "/console":
            return self._error_page(404, "not found")
        session = self.session_from_request()
        if session is None:
            return self._error_page(401, "Unauthorised")
        q = self.query()
        store = self.server.backend.store
        target = q.get("ref") or q.get("uuid")
        hit = store.resolve(target) if target else None
        if hit is None or hit[0] not in ("console", "VM"):
            return self._error_page(404, "console not found")
        self.wfile.write(b"HTTP/1.1 200 OK\r\n\r\n")
        self.wfile.flush()
        # a minimal RFB 3.3 greeting: enough for a client to see a VNC server
        self.wfile.write(b"RFB 003.003\n")
        self.wfile.flush()
        self.close_connection = True

    # -- simulator control (fault injection) -------------------------------
    def _control(self, method: str, path: str) -> None:
        faults = self.server.sim.faults
        if path == "/_xapisim/faults":
            if method == "GET":
                body = json.dumps({"rules": faults.rules(), "fired": faults.fired}).encode()
                return self._send(200, body, "application/json")
            if method == "DELETE":
                faults.clear()
                return self._send(200, b"{}", "application/json")
            raw = self._read_body()
            if raw is None:
                return
            try:
                spec = json.loads(raw)
                rule = faults.add(spec["match"], spec["action"], error=spec.get("error"),
                                  seconds=spec.get("seconds", 0), count=spec.get("count", 1),
                                  after=spec.get("after", 0))
            except (ValueError, KeyError, TypeError) as e:
                return self._send(400, json.dumps({"error": str(e)}).encode(), "application/json")
            return self._send(200, json.dumps(rule.to_dict()).encode(), "application/json")
        if path == "/_xapisim/state" and method == "GET":
            return self._send(200, json.dumps(self.server.sim.summary()).encode(),
                              "application/json")
        self._error_page(404, "not found")


def chunk_frames(rfile):
    """Yield (offset, data) from xapi's ``chunked`` framing until the 0/0 end frame."""
    while True:
        head = rfile.read(12)
        if len(head) < 12:
            raise HttpError(400, "truncated chunk header")
        offset, length = struct.unpack("<QI", head)
        if offset == 0 and length == 0:
            return
        data = rfile.read(length)
        if len(data) < length:
            raise HttpError(400, "truncated chunk")
        yield offset, data


def serve_in_thread(server: HostServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name=f"xapisim-{server.server_address}", daemon=True)
    t.start()
    return t


_ = socket
