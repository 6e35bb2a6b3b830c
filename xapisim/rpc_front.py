"""The RPC lane of one simulated host: one selector thread serving XML-RPC and JSON-RPC calls.

With a thread per connection (the standard library's ``ThreadingHTTPServer``,
which ``http_front`` still is for everything else), sixteen busy clients meant
sixteen threads handing the GIL to each other several times per call, and the
server spent more time switching than answering.  Here one thread watches every
plain-HTTP connection, reads whole requests as they arrive and answers the calls
that cannot block (the messages xapi generates: getters, setters, records,
queries) at once, back to back.  A call that may block or take long (anything
with its own behaviour: ``event.from``, ``VM.start``, plugins, imports, and
every call while a fault rule is armed) runs in a thread of its own, and its
connection comes back to the loop once the answer is written.

A connection whose request is not a plain RPC POST (xapi's HTTP handlers,
``CONNECT``, the control API, chunked or ``Expect`` bodies, anything malformed)
is handed, with every byte already read, to ``http_front``'s handler in a
thread, which answers exactly as before.  HTTPS connections never come here.

Answers are byte for byte those of ``http_front``: both build them with
:func:`answer` and :func:`response_head`.
"""
from __future__ import annotations

import collections
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from .errors import XapiError
from .faults import DropConnection
from .http_head import HeaderError, http_date, parse_head
from .wire import jsonrpc as jwire
from .wire import xmlrpc as xwire

LOG = logging.getLogger(__name__)

MAX_RPC_SIZE = 300 * 1024  # xapi refuses bigger RPC bodies (413)
MAX_HEAD = 64 * 1024  # a request head this long without its end goes to the handler's checks
RPC_PATHS = {"/": "xml", "/RPC2": "xml", "/json": "json", "/jsonrpc": "json"}
CONTENT_TYPES = {"xml": "text/xml", "json": "application/json"}
SERVER_VERSION = (f"{BaseHTTPRequestHandler.server_version} "
                  f"{BaseHTTPRequestHandler.sys_version}")
REASONS = {code: text for code, (text, _) in BaseHTTPRequestHandler.responses.items()}


def response_head(status: int, ctype: str, length: int, date: str,
                  headers: dict | None = None) -> bytes:
    """Status line and headers as ``BaseHTTPRequestHandler.send_response`` wrote them, then
    the headers every answer of ours carries."""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nServer: {SERVER_VERSION}\r\n"
            f"Date: {date}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
            "Access-Control-Allow-Origin: *\r\n"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1")


def answer(dispatcher, kind: str, name: str, params: list, req_id=None, v2: bool = False) -> bytes:
    """The body answering one decoded call (``DropConnection`` passes through)."""
    try:
        result = dispatcher.dispatch(name, params)
    except XapiError as e:
        if kind == "xml":
            return xwire.failure(e.description)
        return jwire.failure(e.description, req_id, v2)
    if kind == "xml":
        return xwire.success(result)
    return jwire.success(result, req_id, v2)


@dataclass(slots=True)
class _Request:
    """A complete plain RPC request at the head of a connection's buffer."""

    kind: str  # "xml" or "json"
    end: int  # where the request ends in the buffer
    close: bool  # close the connection after the answer
    name: str
    params: list
    req_id: object = None
    v2: bool = False


class _Conn:
    __slots__ = ("sock", "addr", "inbuf", "outbuf", "busy", "closing")

    def __init__(self, sock: socket.socket, addr) -> None:
        self.sock = sock
        self.addr = addr
        self.inbuf = bytearray()
        self.outbuf = b""
        self.busy = False  # a worker thread has it
        self.closing = False  # close once outbuf is written


class RpcLoop:
    """The selector thread of one host's listener.

    ``server`` gives ``dispatcher``, ``killed()`` and ``backend.faults``;
    ``handoff(sock, addr, prefix)`` serves a connection the classic way from
    then on.
    """

    def __init__(self, server, handoff: Callable[[socket.socket, object, bytes], None]) -> None:
        self.server = server
        self.handoff = handoff
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming: collections.deque[_Conn] = collections.deque()
        self._conns: set[_Conn] = set()
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="xapisim-rpc", daemon=True)
        self.thread.start()

    # -- called from other threads ------------------------------------------
    def add(self, sock: socket.socket, addr) -> None:
        """A new connection from the listener."""
        self._give(_Conn(sock, addr))

    def _give(self, conn: _Conn) -> None:
        self._incoming.append(conn)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # the loop is already awake (the pipe is full), or stopped

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self.thread.join(5)
        for conn in list(self._conns) + list(self._incoming):
            if not conn.busy:
                _close(conn.sock)
        self._wake_r.close()
        self._wake_w.close()
        self.selector.close()

    # -- the loop -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self.selector.select(1.0)
            except OSError:
                return
            for key, mask in events:
                conn = key.data
                try:
                    if conn is None:
                        self._take_incoming()
                    elif mask & selectors.EVENT_WRITE:
                        self._flush(conn)
                    else:
                        self._readable(conn)
                except Exception:  # noqa: BLE001 - one connection's failure must not stop the loop
                    LOG.exception("RPC loop: dropping a connection after an unexpected error")
                    if conn is not None:
                        self._drop(conn)

    def _take_incoming(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # drained (BlockingIOError), or closed
            pass
        while self._incoming:
            conn = self._incoming.popleft()
            conn.busy = False
            if self._stopping:
                _close(conn.sock)
                continue
            conn.sock.setblocking(False)
            self._conns.add(conn)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            if conn.inbuf:  # a pipelined request came with the previous one
                self._serve(conn)

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._drop(conn)
        conn.inbuf += data
        self._serve(conn)

    def _serve(self, conn: _Conn) -> None:
        """Answer every complete request in the buffer, in order, while they are quick."""
        while conn.inbuf and not conn.outbuf:
            if self.server.killed():
                return self._drop(conn)
            req = self._parse(conn)
            if req is None:
                return  # wait for more bytes
            if req is False:
                return self._hand_off(conn)
            dispatcher = self.server.dispatcher
            if not dispatcher.is_quick(req.name) or self.server.backend.faults.armed():
                return self._to_worker(conn, req)
            del conn.inbuf[:req.end]
            try:
                out = self._reply(dispatcher, req)
            except DropConnection:
                return self._drop(conn)
            self._write(conn, out, req.close)
            if conn.sock.fileno() < 0:
                return

    def _parse(self, conn: _Conn):
        """The request at the head of the buffer: a ``_Request``, ``None`` while incomplete,
        or ``False`` if it is anything but a plain RPC call (for the classic handler)."""
        buf = conn.inbuf
        hend = buf.find(b"\r\n\r\n")
        if hend < 0:
            return None if len(buf) < MAX_HEAD else False
        request_line, _, head = bytes(buf[:hend]).partition(b"\r\n")
        words = request_line.decode("iso-8859-1").split()
        if len(words) != 3 or words[0] != "POST" or words[1] not in RPC_PATHS \
                or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return False
        try:
            headers = parse_head(head)
        except HeaderError:
            return False
        if headers.get("Transfer-Encoding") is not None or headers.get("Expect") is not None:
            return False
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():
            return False
        length = int(length)
        connection = headers.get("Connection", "").lower()
        close = connection == "close" or (words[2] == "HTTP/1.0" and connection != "keep-alive")
        if length > MAX_RPC_SIZE:
            return False
        end = hend + 4 + length
        if len(buf) < end:
            return None
        body = bytes(buf[hend + 4:end])
        kind = RPC_PATHS[words[1]]
        try:
            if kind == "xml":
                req = _Request(kind, end, close, *xwire.parse_call(body))
            else:
                name, params, req_id, v2 = jwire.parse_call(body)
                req = _Request(kind, end, close, name, params, req_id, v2)
        except (xwire.RequestError, jwire.RequestError):
            return False
        return False if req.name.startswith("system.") else req

    def _reply(self, dispatcher, req: _Request) -> bytes:
        body = answer(dispatcher, req.kind, req.name, req.params, req.req_id, req.v2)
        return response_head(200, CONTENT_TYPES[req.kind], len(body), http_date()) + body

    def _write(self, conn: _Conn, out: bytes, close: bool) -> None:
        try:
            n = conn.sock.send(out)
        except BlockingIOError:
            n = 0
        except OSError:
            return self._drop(conn)
        if n < len(out):
            conn.outbuf = out[n:]
            conn.closing = close
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        if close:
            self._drop(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            return
        except OSError:
            return self._drop(conn)
        conn.outbuf = conn.outbuf[n:]
        if conn.outbuf:
            return
        if conn.closing:
            return self._drop(conn)
        self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._serve(conn)

    def _drop(self, conn: _Conn) -> None:
        self._release(conn)
        _close(conn.sock)

    def _release(self, conn: _Conn) -> None:
        """Take a connection out of the loop (to close it, or for another thread)."""
        self._conns.discard(conn)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _hand_off(self, conn: _Conn) -> None:
        self._release(conn)
        conn.sock.setblocking(True)
        prefix, conn.inbuf = bytes(conn.inbuf), bytearray()
        self.handoff(conn.sock, conn.addr, prefix)

    def _to_worker(self, conn: _Conn, req: _Request) -> None:
        self._release(conn)
        del conn.inbuf[:req.end]
        conn.busy = True
        threading.Thread(target=self._work, args=(conn, req), daemon=True,
                         name="xapisim-rpc-call").start()

    def _work(self, conn: _Conn, req: _Request) -> None:
        """Run one call that may block, answer it, and give the connection back."""
        try:
            out = self._reply(self.server.dispatcher, req)
            conn.sock.setblocking(True)
            conn.sock.sendall(out)
        except (DropConnection, OSError):
            _close(conn.sock)
            return
        except Exception:  # noqa: BLE001 - the dispatcher turns errors into answers; log the rest
            LOG.exception("RPC worker failed")
            _close(conn.sock)
            return
        if req.close or self._stopping:
            _close(conn.sock)
            return
        self._give(conn)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
