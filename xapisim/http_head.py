"""HTTP request heads and the Date header, as both of a host's fronts read and write them.

``read_headers`` reads header lines as ``http.client.parse_headers`` did (the
first of repeated headers wins, obs-fold continuations are joined, its limits
on line length and count), without the ``email`` parser.
"""
from __future__ import annotations

import time
from email.utils import formatdate

MAX_HEADER_LINE = 65536  # http.client's limits, which the standard parser applied
MAX_HEADERS = 100


class Headers:
    """A request's headers, looked up without regard to case (the first of repeated ones).

    What ``http.client.parse_headers`` gave, for the one use made of it (``get``),
    without building an ``email`` message for every call: that parser was a fifth
    of the time of a small RPC.
    """

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._h.setdefault(name.lower(), value)

    def get(self, name: str, default=None):
        return self._h.get(name.lower(), default)


class HeaderError(Exception):
    """A header line too long, or too many headers (431, as http.server answers)."""


def read_headers(rfile) -> Headers:
    """Header lines from ``rfile`` up to the blank line."""
    def lines():
        count = 0
        while True:
            line = rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                raise HeaderError("Line too long", "header line")
            if line in (b"\r\n", b"\n", b""):
                return
            count += 1
            if count > MAX_HEADERS:
                raise HeaderError("Too many headers", f"got more than {MAX_HEADERS} headers")
            yield line
    return headers_of(lines())


def parse_head(block: bytes) -> Headers:
    """The header lines of a request head already read whole (after its request line,
    before the blank line), with the same limits."""
    lines = block.split(b"\r\n") if block else []
    if len(lines) > MAX_HEADERS:
        raise HeaderError("Too many headers", f"got more than {MAX_HEADERS} headers")
    if any(len(line) > MAX_HEADER_LINE for line in lines):
        raise HeaderError("Line too long", "header line")
    return headers_of(lines)


def headers_of(lines) -> Headers:
    """Folded continuations joined (RFC 7230 obs-fold), lines without a colon dropped."""
    headers = Headers()
    name = value = None
    for line in lines:
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and name is not None:
            value = f"{value} {text.strip()}"
            continue
        if name is not None:
            headers.add(name, value)
        name, sep, value = text.partition(":")
        if not sep:
            name = None  # not a header: the email parser dropped it as a defect too
            continue
        name, value = name.rstrip(), value.strip()
    if name is not None:
        headers.add(name, value)
    return headers


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]
