"""For tests: what nova-novncproxy does toward a compute host, with a plain TCP client in front.

nova-novncproxy validates a console token into connect info (host, port,
``internal_access_path``), opens a socket to the host, sends ``CONNECT <path>
HTTP/1.1`` and waits for a ``200`` answer (nova/console/websocketproxy.py),
then negotiates RFB security with Nova's own ``RFBSecurityProxy`` and relays
bytes. A ``Relay`` does the same for one VNC client that connects to its
local port (a real VNC client such as vncdotool, speaking TCP where the
proxy's clients speak WebSocket).
"""

from __future__ import annotations

import select
import socket
import threading

from nova.console.securityproxy import rfb


class Relay:
    """Listens on 127.0.0.1:``port``; each client is relayed to the console at ``info``."""

    def __init__(self, host: str, port: int, internal_access_path: str) -> None:
        self._target = (host, int(port), internal_access_path)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.errors: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        host, port, path = self._target
        try:
            with client, socket.create_connection((host, port), timeout=30) as compute:
                compute.sendall(f"CONNECT {path} HTTP/1.1\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = compute.recv(1)
                    if not chunk:
                        raise ConnectionError("the host closed the console connection")
                    head += chunk
                if b"200" not in head.split(b"\r\n")[0]:
                    raise ConnectionError(f"the host answered {head.splitlines()[0]!r}")
                compute.settimeout(None)
                secured = rfb.RFBSecurityProxy().connect(client, compute)
                _pump(client, secured)
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.errors.append(f"{type(e).__name__}: {e}")


def _pump(a: socket.socket, b: socket.socket) -> None:
    while True:
        readable, _, _ = select.select([a, b], [], [])
        for src in readable:
            data = src.recv(65536)
            if not data:
                return
            (b if src is a else a).sendall(data)
