"""XML-RPC as xapi speaks it (ocaml-rpc's non-strict encoder).

Requests are parsed with the standard library's unmarshaller.  Responses are
written by hand because xapi's encoding is not Python's: ints travel as
untyped strings, only ``Int32`` values get ``<i4>``, floats print with 16
significant digits, datetimes as ``YYYYMMDDTHH:MM:SSZ``, and control
characters other than TAB/LF/CR are dropped.
"""
from __future__ import annotations

import re
import xmlrpc.client
from xml.parsers.expat import ExpatError

from ..values import Int32, XDateTime


class RequestError(Exception):
    """The body is not a usable XML-RPC call (xapi answers HTTP 500)."""


def parse_call(body: bytes) -> tuple[str, list]:
    try:
        params, name = xmlrpc.client.loads(body, use_builtin_types=False)
    except (ExpatError, ValueError, TypeError, xmlrpc.client.ResponseError, IndexError) as e:
        raise RequestError(f"malformed XML-RPC request: {e}") from None
    if not name:
        raise RequestError("no methodName")
    if b"<params" not in body:
        raise RequestError("methodCall without params")
    return name, list(params)


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _esc(s: str) -> str:
    s = _CTRL.sub("", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def value(v, out: list[str]) -> None:
    """Append the XML-RPC encoding of ``v`` to ``out``."""
    if isinstance(v, bool):
        out.append("<value><boolean>1</boolean></value>" if v else "<value><boolean>0</boolean></value>")
    elif isinstance(v, XDateTime):
        out.append(f"<value><dateTime.iso8601>{v}</dateTime.iso8601></value>")
    elif isinstance(v, str):
        out.append(f"<value>{_esc(v)}</value>")
    elif isinstance(v, Int32):
        out.append(f"<value><i4>{int(v)}</i4></value>")
    elif isinstance(v, int):
        out.append(f"<value>{v}</value>")
    elif isinstance(v, float):
        out.append(f"<value><double>{v:.16g}</double></value>")
    elif isinstance(v, dict):
        out.append("<value><struct>")
        for k, x in v.items():
            out.append(f"<member><name>{_esc(str(k))}</name>")
            value(x, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(v, (list, tuple)):
        out.append("<value><array><data>")
        for x in v:
            value(x, out)
        out.append("</data></array></value>")
    elif v is None:
        out.append("<value></value>")
    else:
        out.append(f"<value>{_esc(str(v))}</value>")


def encode_value(v) -> str:
    out: list[str] = []
    value(v, out)
    return "".join(out)


def _response(struct_body: str) -> bytes:
    return ("<?xml version=\"1.0\"?><methodResponse><params><param>"
            f"{struct_body}</param></params></methodResponse>").encode()


def success(v) -> bytes:
    return _response("<value><struct><member><name>Status</name><value>Success</value></member>"
                     f"<member><name>Value</name>{encode_value(v)}</member></struct></value>")


def failure(description: list[str]) -> bytes:
    return _response("<value><struct><member><name>Status</name><value>Failure</value></member>"
                     f"<member><name>ErrorDescription</name>{encode_value(list(description))}"
                     "</member></struct></value>")


def bare(v) -> bytes:
    """A result without the Status/Value envelope (system.listMethods quirk)."""
    return _response(encode_value(v))


def call(name: str, params: list) -> bytes:
    """Encode a call the way xapi's plugin runner does (all values strings)."""
    parts = [f"<?xml version=\"1.0\"?><methodCall><methodName>{_esc(name)}</methodName><params>"]
    for p in params:
        parts.append(f"<param>{encode_value(p)}</param>")
    parts.append("</params></methodCall>")
    return "".join(parts).encode()
