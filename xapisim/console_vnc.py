"""A running VM's VNC server, behind xapi's ``/console`` handler: RFB 3.8, showing the console log.

On a real host xapi answers ``CONNECT /console?ref=...`` with ``200 OK``
(console.ml ``real_proxy'``, http.ml ``http_200_ok``) and then relays the
connection to the VNC server of the domain's QEMU. Here that server is this
module: RFB 3.8 (RFC 6143) with security type None, a true-colour framebuffer
in any pixel format the client sets, Raw encoding, and a screen that shows the
last lines of what the guest wrote to its console log (dom0's
``/var/log/xen/guest/console.<domid>``), drawn with Pillow's default font. The
screen is drawn again when the log grows, and an incremental update request is
answered once it has.

Key and pointer events are read and ignored, as a guest that ignores its
keyboard would.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 400
MARGIN = 4
LINE_HEIGHT = 16
FOREGROUND, BACKGROUND = (224, 224, 224), (0, 0, 0)
#: how often a waiting incremental update looks at the log again
POLL = 0.2
VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
RAW = 0


def render(text: str) -> Image.Image:
    """The screen for a console log's text: its last lines that fit, top to bottom."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    rows = (HEIGHT - 2 * MARGIN) // LINE_HEIGHT
    lines = text.replace("\r", "").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines[-rows:]):
        draw.text((MARGIN, MARGIN + i * LINE_HEIGHT), line.expandtabs(), fill=FOREGROUND,
                  font=font)
    return image


class PixelFormat:
    """RFB's PIXEL_FORMAT: how the client wants each pixel's bytes."""

    def __init__(self, bpp: int = 32, depth: int = 24, big_endian: bool = False,
                 true_colour: bool = True, maxes: tuple[int, int, int] = (255, 255, 255),
                 shifts: tuple[int, int, int] = (16, 8, 0)) -> None:
        self.bpp, self.depth, self.big_endian, self.true_colour = bpp, depth, big_endian, true_colour
        self.maxes, self.shifts = maxes, shifts

    def pack(self) -> bytes:
        return struct.pack("!BBBBHHHBBB3x", self.bpp, self.depth, self.big_endian,
                           self.true_colour, *self.maxes, *self.shifts)

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        bpp, depth, be, tc, rm, gm, bm, rs, gs, bs = struct.unpack("!BBBBHHHBBB3x", data)
        return cls(bpp, depth, bool(be), bool(tc), (rm, gm, bm), (rs, gs, bs))

    def encode(self, image: Image.Image) -> bytes:
        """The image's pixels in this format."""
        if not self.true_colour or self.bpp not in (8, 16, 32):
            raise ValueError("only true-colour pixel formats of 8, 16 or 32 bits are served")
        if self.bpp == 32 and self.maxes == (255, 255, 255) and \
                sorted(self.shifts) in ([0, 8, 16], [8, 16, 24]):
            # each colour in a byte of its own: Pillow lays the bytes out in one pass
            order = ["X"] * 4
            for colour, shift in zip("RGB", self.shifts, strict=True):
                byte = shift // 8
                order[3 - byte if self.big_endian else byte] = colour
            mode = "".join(order)
            if mode in ("RGBX", "BGRX", "XRGB", "XBGR"):  # Pillow's packers for RGB
                return image.tobytes("raw", mode)
        size = self.bpp // 8
        endian = "big" if self.big_endian else "little"
        out = bytearray()
        for r, g, b in getattr(image, "get_flattened_data", image.getdata)():
            value = 0
            for c, m, s in zip((r, g, b), self.maxes, self.shifts, strict=True):
                value |= (c * m // 255) << s
            out += value.to_bytes(size, endian)
        return bytes(out)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the VNC client went away")
        data += chunk
    return data


def serve(sock: socket.socket, name: str, console_log: Callable[[], Path]) -> None:
    """Speak RFB 3.8 on ``sock`` until the client leaves; ``console_log`` names the log file."""
    try:
        _serve(sock, name, console_log)
    except (ConnectionError, OSError):
        pass


def _text(console_log: Callable[[], Path]) -> str:
    try:
        return console_log().read_text(errors="replace")
    except OSError:
        return ""


def _serve(sock: socket.socket, name: str, console_log: Callable[[], Path]) -> None:
    sock.sendall(VERSION)
    if not _read(sock, 12).startswith(b"RFB 003."):
        return
    sock.sendall(bytes([1, SECURITY_NONE]))
    if _read(sock, 1)[0] != SECURITY_NONE:
        reason = b"only security type None is offered"
        sock.sendall(struct.pack("!I", 1) + struct.pack("!I", len(reason)) + reason)
        return
    sock.sendall(struct.pack("!I", 0))  # SecurityResult: OK
    _read(sock, 1)  # ClientInit: shared or not, all the same here
    fmt = PixelFormat()
    encoded_name = name.encode()
    sock.sendall(struct.pack("!HH", WIDTH, HEIGHT) + fmt.pack()
                 + struct.pack("!I", len(encoded_name)) + encoded_name)
    shown: str | None = None
    waiting = False  # an incremental request waits until the screen changes
    while True:
        readable, _, _ = select.select([sock], [], [], POLL if waiting else None)
        if not readable:
            text = _text(console_log)
            if text != shown:
                shown = _send_frame(sock, fmt, text)
                waiting = False
            continue
        kind = _read(sock, 1)[0]
        if kind == 0:  # SetPixelFormat
            fmt = PixelFormat.unpack(_read(sock, 19)[3:])
        elif kind == 2:  # SetEncodings: Raw is always allowed
            (count,) = struct.unpack("!xH", _read(sock, 3))
            _read(sock, 4 * count)
        elif kind == 3:  # FramebufferUpdateRequest
            incremental = _read(sock, 9)[0]
            text = _text(console_log)
            if not incremental or text != shown:
                shown = _send_frame(sock, fmt, text)
                waiting = False
            else:
                waiting = True
        elif kind == 4:  # KeyEvent
            _read(sock, 7)
        elif kind == 5:  # PointerEvent
            _read(sock, 5)
        elif kind == 6:  # ClientCutText
            (length,) = struct.unpack("!3xI", _read(sock, 7))
            _read(sock, length)
        else:
            return  # a message RFB 3.8 does not have: a real server drops the client too


def _send_frame(sock: socket.socket, fmt: PixelFormat, text: str) -> str:
    pixels = fmt.encode(render(text))
    sock.sendall(struct.pack("!BxH", 0, 1) + struct.pack("!HHHHi", 0, 0, WIDTH, HEIGHT, RAW)
                 + pixels)
    return text
