"""The HTTP front of one simulated host: RPC endpoints and xapi's HTTP handlers.

Built on the standard library's ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive),
with no dependency.  Over plain HTTP, accepted connections go to ``rpc_front``'s
selector loop, which answers RPC calls itself and hands any other request
(with the bytes it read) back here, to a thread per connection; over HTTPS
every connection has its thread here.  It only decodes and encodes; the
backend holds all state.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import ssl
import struct
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import console_vnc, dispatcher, rpc_front, vdi_io, xva_io
from .errors import HttpError, XapiError
from .faults import DropConnection
from .http_head import HeaderError, http_date, read_headers
from .wire import jsonrpc as jwire
from .wire import xmlrpc as xwire

LOG = logging.getLogger(__name__)
MAX_RPC_SIZE = rpc_front.MAX_RPC_SIZE


class _Prefixed(io.RawIOBase):
    """A socket's reader that first gives back bytes already read from it."""

    def __init__(self, prefix: bytes, raw) -> None:
        self.prefix = memoryview(prefix)
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.prefix.nbytes:
            n = min(len(b), self.prefix.nbytes)
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return self.raw.readinto(b)


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
        # plain-HTTP RPC is served by one selector thread; HTTPS keeps a thread per connection
        self.rpc_loop = rpc_front.RpcLoop(self, self.serve_classic) if ssl_context is None else None

    def process_request(self, request, client_address) -> None:
        if self.ssl_context is None and self.sim.tls and self._https_only():
            self.shutdown_request(request)  # the host's firewall closed its plain-HTTP port
            return
        if self.rpc_loop is None:
            return super().process_request(request, client_address)
        self.rpc_loop.add(request, client_address)

    def _https_only(self) -> bool:
        return bool(self.backend.store.tables["host"].get(self.host_ref, {}).get("https_only"))

    def serve_classic(self, sock, addr, prefix: bytes = b"") -> None:
        """Serve a connection with a thread of its own from now on, as ThreadingMixIn does,
        its first bytes being ``prefix`` (what the RPC loop had already read)."""
        def run() -> None:
            try:
                Handler(sock, addr, self, prefix)
            except Exception:  # noqa: BLE001 - as socketserver.handle_error, without stderr
                LOG.exception("HTTP handler failed")
            finally:
                self.shutdown_request(sock)
        threading.Thread(target=run, daemon=True, name="xapisim-http").start()

    def server_close(self) -> None:
        super().server_close()
        if self.rpc_loop is not None:
            self.rpc_loop.stop()

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

    def log_message(self, fmt: str, *args) -> None:
        """No access log: query strings carry session refs, and a line per request would
        drown the logs of whatever test or service uses the simulator."""

    def __init__(self, request, client_address, server, prefix: bytes = b"") -> None:
        self.prefix = prefix
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        if self.prefix:
            self.rfile = io.BufferedReader(_Prefixed(self.prefix, self.connection.makefile("rb", 0)))
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with the same answers to bad requests,
        reading headers with :func:`read_headers`."""
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                numbers = version.split("/", 1)[1].split(".")
                if len(numbers) != 2 or not all(n.isdigit() and len(n) <= 10 for n in numbers):
                    raise ValueError
                version_number = int(numbers[0]), int(numbers[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1):
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                f"Invalid HTTP version ({version.split('/', 1)[1]})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)
        except HeaderError as e:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, *e.args)
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue"
                and self.request_version >= "HTTP/1.1"):
            return self.handle_expect_100()
        return True

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
        """A whole answer in one write: the status line and headers ``send_response``
        and ``send_header`` would have written, then the body."""
        if self.request_version == "HTTP/0.9":  # no status line or headers, as send_response
            self.wfile.write(body)
            return
        for k, v in (headers or {}).items():
            if k.lower() == "connection" and v.lower() in ("close", "keep-alive"):
                self.close_connection = v.lower() == "close"
        self.wfile.write(rpc_front.response_head(status, ctype, len(body), http_date(), headers) + body)

    def _error_page(self, status: int, reason: str, text: str = "",
                    headers: dict | None = None) -> None:
        """xapi's error pages (http_svr.ml): HTML, ``Connection: close``, no caching."""
        body = f"<html><body><h1>HTTP {status} {reason.lower()}</h1>{text}</body></html>".encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._error_page(411, "Length Required", "Content-Length required")
            self.close_connection = True
            return None
        try:
            n = int(length)
        except ValueError:
            self._error_page(400, "Bad Request", "bad Content-Length")
            self.close_connection = True
            return None
        if n > MAX_RPC_SIZE or n < 0:
            self._error_page(413, "Request Entity Too Large", "request too large")
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

    # -- routing, as xapi's Http_svr does it -------------------------------
    def _route(self, method: str) -> None:
        """Pick the handler with the longest matching path prefix (http_svr.ml).

        No prefix matches: 403 Forbidden (xapi's default callback).  A method
        xapi has no handler for at all: 501.  ``/_xapisim/`` is the
        simulator's own control API and not xapi's.
        """
        path = self.path
        if not path.startswith("/") or any(c in path for c in "?#;"):  # else urlparse keeps it whole
            path = urllib.parse.urlparse(path).path
        if path.startswith("/_xapisim/"):
            return self._control(method, path)
        table = ROUTES.get(method)
        if table is None:
            self._drain_small_body()
            return self._error_page(501, "Method not implemented",
                                    f"<p>{method} not supported.<br /></p>")
        best = max((p for p in table if path.startswith(p)), key=len, default=None)
        if best is None:
            self._drain_small_body()
            return self._forbidden()
        getattr(self, table[best])()

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_CONNECT(self) -> None:
        self._route("CONNECT")

    def _forbidden(self) -> None:
        self._error_page(403, "Forbidden", "Access to the requested resource is forbidden.")

    # -- RPC ---------------------------------------------------------------
    def do_OPTIONS(self) -> None:
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "content-type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _post_xmlrpc(self) -> None:
        body = self._read_body()
        if body is not None:
            self._xmlrpc(body)

    def _post_jsonrpc(self) -> None:
        body = self._read_body()
        if body is not None:
            self._jsonrpc(body)

    def _xmlrpc(self, body: bytes) -> None:
        try:
            name, params = xwire.parse_call(body)
        except xwire.RequestError as e:
            return self._error_page(500, "Internal Error", str(e))
        if name == "system.listMethods":
            return self._send(200, xwire.bare(dispatcher.all_wire_names()), "text/xml")
        if name == "system.isAlive":
            return self._send(200, xwire.success(params[0] if params else ""), "text/xml")
        self._send(200, rpc_front.answer(self.server.dispatcher, "xml", name, params), "text/xml")

    def _jsonrpc(self, body: bytes) -> None:
        try:
            name, params, req_id, v2 = jwire.parse_call(body)
        except jwire.RequestError as e:
            return self._error_page(500, "Internal Error", str(e))
        if name == "system.listMethods":
            return self._send(200, jwire.success(dispatcher.all_wire_names(), req_id, v2),
                              "application/json")
        self._send(200, rpc_front.answer(self.server.dispatcher, "json", name, params, req_id, v2),
                   "application/json")

    # -- HTTP handlers -----------------------------------------------------
    def param(self, name: str) -> str | None:
        """A handler argument: from the cookie first, then the query (xapi_http.ml)."""
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return urllib.parse.unquote(v)
        return self.query().get(name)

    def session_from_request(self) -> tuple[str, bool]:
        """The session of an HTTP handler call and whether to log it out afterwards.

        As ``Xapi_http.with_context``: a ``session_id`` (cookie, then query)
        must exist; otherwise HTTP Basic credentials log in for this request
        alone.  Anything else is ``Unauthorised``; an Authorization header that
        is not Basic is a 500, as in xapi.
        """
        backend = self.server.backend
        sid = self.param("session_id")
        if sid is not None:
            if not backend.session_valid(sid):
                raise Unauthorised()
            backend.touch_session(sid)
            return sid, False
        auth = self.headers.get("Authorization")
        if auth is None:
            raise Unauthorised()
        if not auth.startswith("Basic "):
            raise HttpError(500, "Unknown authorization header")
        try:
            user, _, pwd = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            return backend.login(backend.master_ref, user, pwd, "http-basic", pool=True), True
        except (XapiError, ValueError, UnicodeDecodeError):
            raise Unauthorised() from None

    def _handler(self, fn, label: str) -> None:
        """Run an HTTP handler as ``Xapi_http.with_context`` does."""
        try:
            session, logout = self.session_from_request()
        except Unauthorised:
            self._unauthorised(label)
            return
        except HttpError as e:
            self._drain_small_body()
            self._error_page(e.status, e.reason, e.text)
            self.close_connection = True
            return
        try:
            fn(self, session)
        except HttpError as e:
            self._error_page(e.status, e.reason, e.text)
            self.close_connection = True
        finally:
            if logout:
                self.server.backend.logout(session)

    def _unauthorised(self, label: str) -> None:
        """401 with xapi's realm; a caller's task fails with SESSION_AUTHENTICATION_FAILED."""
        tid = self.param("task_id")
        store = self.server.backend.store
        if tid and store.exists("task", tid):
            from . import tasks
            from .call import Call
            tasks.finish(Call(self.server.backend, self.server.host_ref, task=tid), tid,
                         error=XapiError("SESSION_AUTHENTICATION_FAILED"))
        self._drain_small_body()
        self._error_page(401, "Unauthorised", "Please check your credentials and retry.",
                         {"WWW-Authenticate": f'Basic realm="{label}"'})
        self.close_connection = True

    def _put_import_raw_vdi(self) -> None:
        self._handler(vdi_io.import_raw_vdi, "VDI.import")

    def _get_export_raw_vdi(self) -> None:
        self._handler(vdi_io.export_raw_vdi, "VDI.export_raw")

    def _get_export(self) -> None:
        self._handler(xva_io.export_vm, "VM.export")

    def _get_export_metadata(self) -> None:
        self._handler(xva_io.export_metadata, "VM.export_metadata")

    def _put_import(self) -> None:
        self._handler(xva_io.import_vm, "VM.import")

    def _put_import_metadata(self) -> None:
        self._handler(xva_io.import_metadata, "VM.metadata_import")

    def _get_rrd_updates(self) -> None:
        self._handler(_rrd_updates, "rrd_updates")

    def _get_vm_rrd(self) -> None:
        self._handler(_vm_rrd, "vm_rrd")

    def _get_host_rrd(self) -> None:
        self._handler(_host_rrd, "host_rrd")

    def _get_root(self) -> None:
        """xapi's file server: no web pages here, so 404 over HTTPS; plain HTTP is refused."""
        if self.server.ssl_context is None:
            return self._forbidden()
        path = html.escape(urllib.parse.urlparse(self.path).path)
        body = ("<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\"> <html><head> "
                "<title>404 Not Found</title> </head><body> <h1>Not Found</h1> <p>The "
                f"requested URL {path} was not found on this server.</p> <hr><address>Xapi "
                "Server</address></body></html>").encode()
        self._send(404, body, "text/html", {"Connection": "close"})
        self.close_connection = True

    def _connect_console(self) -> None:
        try:
            self.session_from_request()
        except (Unauthorised, HttpError):
            return self._unauthorised("console")
        q = self.query()
        store = self.server.backend.store
        target = q.get("ref") or q.get("uuid")
        hit = store.resolve(target) if target else None
        if hit is None or hit[0] not in ("console", "VM"):
            return self._error_page(404, "Not Found", "console not found")
        backend = self.server.backend
        with store.lock:
            vm = hit[1] if hit[0] == "VM" else store.get("console", hit[1])["VM"]
            rec = store.get("VM", vm)
            if rec["power_state"] not in ("Running", "Paused"):
                return self._error_page(404, "Not Found", "the VM is not running")
            name = rec["name_label"]

        def console_log() -> Path:
            """The log of the VM's domain now (a reboot gives it a new one)."""
            with store.lock:
                now = store.get("VM", vm) if store.exists("VM", vm) else rec
                host = now["resident_on"] if now["resident_on"] in backend.hosts \
                    else rec["resident_on"]
                return backend.dom0_root(host) / "var/log/xen/guest" / f"console.{now['domid']}"

        # console.ml real_proxy': 200 OK (http.ml http_200_ok), then the domain's VNC server
        self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
                         b"Cache-Control: no-cache, no-store\r\n\r\n")
        self.wfile.flush()
        console_vnc.serve(self.connection, name, console_log)
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
        if path == "/_xapisim/calls":
            # POST starts (or restarts) recording, GET reads what was called so far, DELETE
            # stops and returns it
            if method == "POST":
                if self.headers.get("Content-Length") and self._read_body() is None:
                    return
                faults.start_recording()
                calls = []
            else:
                calls = faults.recorded()
                if calls is not None and method == "DELETE":
                    calls = faults.stop_recording()
            if calls is None:
                return self._send(409, json.dumps({"error": "not recording: POST first"}).encode(),
                                  "application/json")
            return self._send(200, json.dumps({"calls": calls}).encode(), "application/json")
        if path == "/_xapisim/migrations" and method == "GET":
            return self._send(200, json.dumps(self.server.sim.migrations).encode(),
                              "application/json")
        if path == "/_xapisim/state" and method == "GET":
            return self._send(200, json.dumps(self.server.sim.summary()).encode(),
                              "application/json")
        self._error_page(404, "Not Found")


def _rrd_updates(req, session: str) -> None:
    """xapi's /rrd_updates (rrdd_proxy.ml hands it to xcp-rrdd): the VMs resident on this host
    and, with ``host=true``, the host, from ``start`` (seconds since the epoch) on."""
    q = req.query()
    req.close_connection = True  # rrdd_proxy.ml: the request is closed after its answer
    if "start" not in q:
        raise HttpError(400, "get_rrd_updates: missing the 'start' parameter")
    try:
        start = int(q["start"])
        interval = int(q.get("interval", "0"))
    except ValueError:
        raise HttpError(400, "start and interval are whole seconds") from None
    cf = q.get("cf", "AVERAGE")
    if cf not in ("AVERAGE", "MIN", "MAX", "LAST"):
        raise HttpError(400, f"unknown consolidation function {cf}")
    from . import rrd
    u = rrd.updates(req.server.backend, req.server.host_ref, start, interval, cf,
                    with_host=q.get("host") == "true", vm_uuid=q.get("vm_uuid"))
    if q.get("json") == "true":
        req._send(200, rrd.to_json(u), "application/json", {"Connection": "close"})
    else:
        req._send(200, rrd.to_xml(u), "text/xml", {"Connection": "close"})


def _vm_rrd(req, session: str) -> None:
    """rrdd_proxy.ml get_vm_rrd_forwarder: the RRD of VM ``uuid`` (xcp-rrdd keeps one for a
    VM that ran here; xapisim draws it from the VM as it is)."""
    from . import rrd
    q = req.query()
    req.close_connection = True
    if "uuid" not in q:
        raise HttpError(400, "get_vm_rrd: missing the 'uuid' parameter")
    body = rrd.dump(req.server.backend, req.server.host_ref, vm_uuid=q["uuid"])
    if not body:
        raise HttpError(404, f"no VM {q['uuid']}")
    req._send(200, body, "text/xml", {"Connection": "close"})


def _host_rrd(req, session: str) -> None:
    """rrdd_proxy.ml get_host_rrd_forwarder: this host's RRD."""
    from . import rrd
    req.close_connection = True
    req._send(200, rrd.dump(req.server.backend, req.server.host_ref), "text/xml",
              {"Connection": "close"})


class Unauthorised(Exception):
    """No valid session or credentials for an HTTP handler (xapi's ``Http.Unauthorised``)."""


# xapi's HTTP handlers by method and path prefix (datamodel.ml ``http_actions``), each
# the name of the Handler method that serves it
ROUTES: dict[str, dict[str, str]] = {
    "GET": {"/": "_get_root", "/export": "_get_export", "/export_metadata": "_get_export_metadata",
            "/export_raw_vdi": "_get_export_raw_vdi", "/rrd_updates": "_get_rrd_updates",
            "/vm_rrd": "_get_vm_rrd", "/host_rrd": "_get_host_rrd"},
    "PUT": {"/import": "_put_import", "/import_metadata": "_put_import_metadata",
            "/import_raw_vdi": "_put_import_raw_vdi"},
    "POST": {"/": "_post_xmlrpc", "/RPC2": "_post_xmlrpc", "/json": "_post_jsonrpc",
             "/jsonrpc": "_post_jsonrpc"},
    "CONNECT": {"/console": "_connect_console"},
}


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

