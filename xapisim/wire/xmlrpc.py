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


# A call whose parameters are all plain strings, as the SDKs send nearly every call
# (session and object refs, uuids, names), optionally inside an XML declaration and
# with whitespace between the tags.  Such a body decodes to exactly what the
# standard unmarshaller gives, without an expat parser and its Python callbacks
# per element; anything else (other types, entities, CDATA, comments) goes to it.
_WS = r"[ \t\r\n]*"  # XML's whitespace between tags
_TEXT = r"[^<>&\r\x00-\x08\x0b\x0c\x0e-\x1f]*"  # text expat passes on unchanged
_SIMPLE_CALL = re.compile((
    r"\A(?:<\?xml version=[\"']1\.0[\"'](?:[ \t\r\n]+encoding=[\"'](?i:utf-8)[\"'])?{ws}\?>)?{ws}"
    r"<methodCall>{ws}<methodName>([A-Za-z0-9_.]+)</methodName>{ws}<params>("
    r"(?:{ws}<param>{ws}<value>(?:<string>{text}</string>|{text})</value>{ws}</param>)*"
    r"){ws}</params>{ws}</methodCall>{ws}\Z").replace("{ws}", _WS).replace("{text}", _TEXT).encode())
_SIMPLE_PARAM = re.compile(
    f"<value>(?:<string>({_TEXT})</string>|({_TEXT}))</value>".encode())


def parse_call(body: bytes) -> tuple[str, list]:
    m = _SIMPLE_CALL.match(body)
    if m is not None:
        try:
            return m.group(1).decode(), [p.group(p.lastindex).decode()
                                         for p in _SIMPLE_PARAM.finditer(m.group(2))]
        except UnicodeDecodeError:
            pass
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
# anything _esc would change: most strings have none of it and are sent as they are
_SPECIAL = re.compile(r'[&<>"\x00-\x08\x0b\x0c\x0e-\x1f]').search


def _esc(s: str) -> str:
    """``s`` as XML text: control characters dropped, markup characters escaped.

    Records send the same strings again and again, so each answer is remembered
    (a dict lookup costs less than the regular expression that finds nothing).
    """
    e = _escaped.get(s)
    if e is None:
        e = s
        if _SPECIAL(s):
            e = _CTRL.sub("", s)
            e = e.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        if len(s) <= 256:  # short ones only, and not too many: a bounded memory
            if len(_escaped) >= 65536:
                _escaped.clear()
            _escaped[s] = e
    return e


_escaped: dict[str, str] = {}


def _str(v: str, out: list[str]) -> None:
    out.append(f"<value>{_escaped.get(v) or _esc(v)}</value>")


def _struct(v: dict, out: list[str]) -> None:
    append = out.append
    get = _escaped.get
    append("<value><struct>")
    for k, x in v.items():
        if type(k) is not str:
            k = str(k)
        t = type(x)
        k = get(k) or _esc(k)
        if t is str:  # the common cases inline: string maps and most record fields
            append(f"<member><name>{k}</name><value>{get(x) or _esc(x)}</value></member>")
        elif t is int:
            append(f"<member><name>{k}</name><value>{x}</value></member>")
        else:
            append(f"<member><name>{k}</name>")
            _ENCODERS.get(t, _other)(x, out)
            append("</member>")
    append("</struct></value>")


def _array(v, out: list[str]) -> None:
    append = out.append
    append("<value><array><data>")
    get = _escaped.get
    for x in v:
        if type(x) is str:
            append(f"<value>{get(x) or _esc(x)}</value>")
        else:
            _ENCODERS.get(type(x), _other)(x, out)
    append("</data></array></value>")


def _other(v, out: list[str]) -> None:
    """Values of other types, subclasses included, by what they are."""
    if isinstance(v, bool):
        out.append("<value><boolean>1</boolean></value>" if v else "<value><boolean>0</boolean></value>")
    elif isinstance(v, XDateTime):
        out.append(f"<value><dateTime.iso8601>{v}</dateTime.iso8601></value>")
    elif isinstance(v, str):
        _str(v, out)
    elif isinstance(v, Int32):
        out.append(f"<value><i4>{int(v)}</i4></value>")
    elif isinstance(v, int):
        out.append(f"<value>{int(v)}</value>")
    elif isinstance(v, float):
        out.append(f"<value><double>{v:.16g}</double></value>")
    elif isinstance(v, dict):
        _struct(v, out)
    elif isinstance(v, (list, tuple)):
        _array(v, out)
    elif v is None:
        out.append("<value></value>")
    else:
        _str(str(v), out)


# exact types first (one dict lookup per value); anything else goes through _other
_ENCODERS = {
    str: _str,
    dict: _struct,
    list: _array,
    tuple: _array,
    bool: lambda v, out: out.append("<value><boolean>1</boolean></value>" if v
                                    else "<value><boolean>0</boolean></value>"),
    int: lambda v, out: out.append(f"<value>{v}</value>"),
    float: lambda v, out: out.append(f"<value><double>{v:.16g}</double></value>"),
    XDateTime: lambda v, out: out.append(f"<value><dateTime.iso8601>{v}</dateTime.iso8601></value>"),
    Int32: lambda v, out: out.append(f"<value><i4>{int(v)}</i4></value>"),
    type(None): lambda v, out: out.append("<value></value>"),
}


def value(v, out: list[str]) -> None:
    """Append the XML-RPC encoding of ``v`` to ``out``."""
    _ENCODERS.get(type(v), _other)(v, out)


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
