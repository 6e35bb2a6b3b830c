"""xapisim's fast paths on the wire give exactly what the standard library's slower ones gave.

The XML-RPC request parser takes a shortcut for calls whose parameters are all
plain strings, the encoder looks values up by exact type, records are copied
without ``copy.deepcopy`` and request headers are read without the ``email``
parser.  Each must be indistinguishable from what it replaced.
"""
from __future__ import annotations

import copy
import io
import socket
import xmlrpc.client

import pytest

from xapisim import SimConfig, Simulator, generic, host_configs
from xapisim.datamodel import classes
from xapisim.http_head import HeaderError, parse_head, read_headers
from xapisim.values import Int32, XDateTime
from xapisim.wire import xmlrpc as xwire

CALLS = [
    xmlrpc.client.dumps(("OpaqueRef:0b1f", "a b", ""), "VM.get_record"),
    xmlrpc.client.dumps((), "session.get_all"),
    xmlrpc.client.dumps(("caf\u00e9 \u2603", "tab\there", "line\nbreak"), "VM.set_name_label"),
    # other types, entities and CDATA are the standard unmarshaller's
    xmlrpc.client.dumps(("a&b", 1, True, 2.5, {"k": ["v"]}), "VM.x"),
    "<methodCall><methodName>A.b</methodName><params><param><value>untyped</value></param>"
    "<param><value></value></param><param><value><string></string></value></param>"
    "</params></methodCall>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodCall>\n <methodName>A.b</methodName>\n"
    " <params>\n  <param>\n   <value><string>x</string></value>\n  </param>\n </params>\n</methodCall>\n",
    "<methodCall><methodName>A.b</methodName><params><param><value>a\r\nb</value></param>"
    "</params></methodCall>",
    "<methodCall><methodName>A.b</methodName><params><param><value><![CDATA[<x>]]></value></param>"
    "</params></methodCall>",
    "<methodCall><methodName>A.b</methodName><params/></methodCall>",
]


@pytest.mark.parametrize("body", CALLS)
def test_parse_call_matches_the_standard_unmarshaller(body: str) -> None:
    raw = body.encode()
    params, name = xmlrpc.client.loads(raw, use_builtin_types=False)
    assert xwire.parse_call(raw) == (name, list(params))


def test_the_plain_string_shortcut_is_taken_for_what_sdks_send() -> None:
    assert xwire._SIMPLE_CALL.match(CALLS[0].encode())
    assert not xwire._SIMPLE_CALL.match(CALLS[3].encode())


@pytest.mark.parametrize("body", [b"<methodCall><methodName>A.b</methodName></methodCall>",
                                  b"<methodCall><methodName>A.b</methodName><params><param>"
                                  b"<value>\x01</value></param></params></methodCall>",
                                  b"not xml"])
def test_malformed_calls_are_still_refused(body: bytes) -> None:
    with pytest.raises(xwire.RequestError):
        xwire.parse_call(body)


class Text(str):
    pass


def _reference_encoding(v) -> str:
    """The encoder as it was written first: an isinstance chain, every string escaped."""
    def esc(s: str) -> str:
        s = xwire._CTRL.sub("", s)
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    if isinstance(v, bool):
        return f"<value><boolean>{int(v)}</boolean></value>"
    if isinstance(v, XDateTime):
        return f"<value><dateTime.iso8601>{v}</dateTime.iso8601></value>"
    if isinstance(v, str):
        return f"<value>{esc(v)}</value>"
    if isinstance(v, Int32):
        return f"<value><i4>{int(v)}</i4></value>"
    if isinstance(v, int):
        return f"<value>{v}</value>"
    if isinstance(v, float):
        return f"<value><double>{v:.16g}</double></value>"
    if isinstance(v, dict):
        return "<value><struct>" + "".join(f"<member><name>{esc(str(k))}</name>"
                                           f"{_reference_encoding(x)}</member>"
                                           for k, x in v.items()) + "</struct></value>"
    if isinstance(v, (list, tuple)):
        return "<value><array><data>" + "".join(map(_reference_encoding, v)) + "</data></array></value>"
    if v is None:
        return "<value></value>"
    return f"<value>{esc(str(v))}</value>"


VALUES = [True, False, 0, -5, 2 ** 40, 1.5, 1e-300, "plain", "a&b<c>\"d\x01e\tf\ng",
          XDateTime("20261203T10:00:00Z"), Int32(7), None, [], {}, Text("sub<class"),
          [1, "x", [2, {"k<": "v&", "n": None}]], {1: 2.0, "a": True, "b": ("t", Int32(1))}]


@pytest.mark.parametrize("v", VALUES, ids=repr)
def test_encoder_matches_the_reference(v) -> None:
    assert xwire.encode_value(v) == _reference_encoding(v)


def test_public_records_equal_a_deep_copy_and_share_nothing() -> None:
    with Simulator(SimConfig(password="pw", hosts=host_configs(2))) as sim:
        store = sim.backend.store
        checked = 0
        for cls, table in store.tables.items():
            cdef = classes()[cls]
            for rec in table.values():
                want = {k: copy.deepcopy(v) for k, v in rec.items() if k in cdef.fields}
                got = generic.public_record(cdef, rec)
                assert list(got.items()) == list(want.items())
                assert [type(x) for x in got.values()] == [type(x) for x in want.values()]
                for k, v in got.items():
                    if isinstance(v, (dict, list)):
                        assert v is not rec[k]
                checked += 1
        assert checked > 100


def test_headers_are_read_as_http_client_read_them() -> None:
    raw = (b"Host: x\r\nContent-Length: 12\r\ncontent-type: text/xml\r\nX-Folded: a\r\n  b\r\n"
           b"Cookie: one=1\r\nCookie: two=2\r\nnot a header\r\n\r\nBODY")
    f = io.BufferedReader(io.BytesIO(raw))
    h = read_headers(f)
    assert h.get("CONTENT-LENGTH") == "12" and h.get("Content-Type") == "text/xml"
    assert h.get("x-folded") == "a b"
    assert h.get("cookie") == "one=1"  # the first, as email.message.Message.get
    assert h.get("missing", "d") == "d"
    assert f.read() == b"BODY"
    whole = parse_head(raw.partition(b"\r\n\r\n")[0])  # the RPC loop's way, on a head read whole
    assert whole._h == h._h


def test_too_many_or_too_long_headers_are_refused() -> None:
    with pytest.raises(HeaderError):
        read_headers(io.BufferedReader(io.BytesIO(b"".join(b"H%d: v\r\n" % i for i in range(101)))))
    with pytest.raises(HeaderError):
        read_headers(io.BufferedReader(io.BytesIO(b"H: " + b"v" * 70000 + b"\r\n\r\n")))
    with pytest.raises(HeaderError):
        parse_head(b"\r\n".join(b"H%d: v" % i for i in range(101)))
    with pytest.raises(HeaderError):
        parse_head(b"H: " + b"v" * 70000)


def test_a_header_flood_gets_431_over_the_wire() -> None:
    with Simulator(SimConfig(password="pw")) as sim:
        with socket.create_connection(("127.0.0.1", sim.port)) as s:
            s.sendall(b"POST / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 431 ")
