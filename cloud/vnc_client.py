"""The smoke test's VNC viewer: RFB 3.8 over nova-novncproxy's WebSocket, as noVNC speaks it.

A browser's noVNC opens ``ws://<proxy>/?token=...`` and speaks RFB in binary
WebSocket messages; nova-novncproxy validates the token, connects to the
compute host's console (``CONNECT /console?...`` on the XenServer host) and
negotiates security itself. This client does the browser's part with
websockify's WebSocket class and returns the first full screen as an image.
"""

from __future__ import annotations

import struct
import urllib.parse

from PIL import Image
from websockify.websocket import WebSocket, WebSocketWantReadError


class _WebSocket(WebSocket):
    """websockify's client sends the URI's path without its query; noVNC's page opens
    ``/?token=...``, so the query is put back on the request line."""

    def __init__(self, query: str) -> None:
        super().__init__()
        self._query = query

    def send_request(self, type: str, path: str) -> None:  # noqa: A002 - websockify's name
        super().send_request(type, f"{path}?{self._query}")


class Viewer:
    def __init__(self, console_url: str) -> None:
        url = urllib.parse.urlsplit(console_url)
        # noVNC's own convention: the token travels in the page's "path" parameter
        path = urllib.parse.parse_qs(url.query).get("path", [""])[0]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("token") or \
            urllib.parse.parse_qs(url.query).get("token")
        if not token:
            raise ValueError(f"no token in the console URL {console_url}")
        self._ws = _WebSocket(urllib.parse.urlencode({"token": token[0]}))
        self._ws.connect(f"ws://{url.netloc}/", protocols=["binary"])
        self._buffer = b""

    def close(self) -> None:
        try:
            self._ws.close()
        except (AttributeError, OSError):  # websockify drops its socket once the peer closed
            pass

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            try:
                msg = self._ws.recvmsg()
            except WebSocketWantReadError:
                continue
            if msg is None:
                raise ConnectionError("the console proxy closed the connection")
            self._buffer += msg
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def screen(self) -> tuple[str, Image.Image]:
        """Handshake (RFB 3.8, security None), then the first full framebuffer update:
        the desktop's name and the screen."""
        version = self._read(12)
        if version != b"RFB 003.008\n":
            raise ConnectionError(f"the proxy offered {version!r}")
        self._ws.sendmsg(version)
        count = self._read(1)[0]
        if 1 not in self._read(count):
            raise ConnectionError("the proxy offered no security type None")
        self._ws.sendmsg(b"\x01")
        if self._read(4) != b"\0\0\0\0":
            raise ConnectionError("security handshake failed")
        self._ws.sendmsg(b"\x01")  # shared
        width, height = struct.unpack("!HH", self._read(4))
        self._read(16)
        name = self._read(struct.unpack("!I", self._read(4))[0]).decode()
        # 32 bits per pixel, little-endian, red in the lowest byte: RGBX
        fmt = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 0, 8, 16)
        self._ws.sendmsg(b"\0\0\0\0" + fmt)
        self._ws.sendmsg(struct.pack("!BxHi", 2, 1, 0))  # Raw only
        self._ws.sendmsg(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        kind, rects = struct.unpack("!BxH", self._read(4))
        if kind != 0:
            raise ConnectionError(f"expected a framebuffer update, got message {kind}")
        image = Image.new("RGB", (width, height))
        for _ in range(rects):
            x, y, w, h, encoding = struct.unpack("!HHHHi", self._read(12))
            if encoding != 0:
                raise ConnectionError(f"the server used encoding {encoding}, not Raw")
            image.paste(Image.frombytes("RGB", (w, h), self._read(w * h * 4), "raw", "RGBX"),
                        (x, y))
        return name, image
