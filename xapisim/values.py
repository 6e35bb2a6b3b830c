"""Checking and converting parameter values against their XAPI types.

Wire decoders hand over Python values as the client sent them (XML-RPC sends
ints as untyped strings, JSON-RPC as numbers); ``coerce`` turns them into the
simulator's internal form or raises the error xapi would.
"""
from __future__ import annotations

import datetime as _dt
import time
import xmlrpc.client

from .datamodel import XType, enum_values
from .errors import XapiError


class XDateTime(str):
    """A datetime in XAPI's ``YYYYMMDDTHH:MM:SSZ`` form (a str, typed for the encoders)."""


class Int32(int):
    """An int that XML-RPC must send typed (``<i4>``), as in ``valid_ref_counts``."""


def now() -> XDateTime:
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))


def from_epoch(t: float) -> XDateTime:
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(t)))


def parse_datetime(text: str) -> XDateTime:
    """Accept the compact form, RFC 3339 with dashes, or no zone (UTC assumed)."""
    s = text.strip()
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ",
                "%Y-%m-%dT%H:%M:%S", "%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S"):
        try:
            d = _dt.datetime.strptime(s, fmt)
            return XDateTime(d.strftime("%Y%m%dT%H:%M:%SZ"))
        except ValueError:
            continue
    try:
        d = _dt.datetime.fromisoformat(s).astimezone(_dt.UTC)
        return XDateTime(d.strftime("%Y%m%dT%H:%M:%SZ"))
    except ValueError:
        raise XapiError("INVALID_VALUE", text) from None


def _type_error(t: XType, v: object) -> XapiError:
    return XapiError("INTERNAL_ERROR", f"Rpc.Runtime_error: expected {t.kind}, got {v!r}"[:400])


def coerce(t: XType, v: object):
    """Convert a decoded wire value to the internal value of type ``t``."""
    k = t.kind
    if k == "string" or k == "ref" or k == "opaque":
        if isinstance(v, str):
            return v
        if k == "opaque":
            return v
        raise _type_error(t, v)
    if k == "int":
        if isinstance(v, bool):
            raise _type_error(t, v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, str):
            try:
                return int(v.strip())
            except ValueError:
                raise _type_error(t, v) from None
        raise _type_error(t, v)
    if k == "float":
        if isinstance(v, bool):
            raise _type_error(t, v)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                raise _type_error(t, v) from None
        raise _type_error(t, v)
    if k == "bool":
        if isinstance(v, bool):
            return v
        raise _type_error(t, v)
    if k == "datetime":
        if isinstance(v, xmlrpc.client.DateTime):
            return parse_datetime(v.value)
        if isinstance(v, str):
            return parse_datetime(v)
        raise _type_error(t, v)
    if k == "enum":
        if not isinstance(v, str):
            raise _type_error(t, v)
        for name in enum_values(t.name):
            if name.lower() == v.lower():
                return name
        raise XapiError("INVALID_VALUE", v)
    if k == "set":
        if not isinstance(v, (list, tuple)):
            raise _type_error(t, v)
        return [coerce(t.elem, x) for x in v]
    if k == "map":
        if not isinstance(v, dict):
            raise _type_error(t, v)
        return {str(coerce(t.elem, key) if t.elem.kind != "int" else coerce(t.elem, key)):
                coerce(t.value, val) for key, val in v.items()}
    if k == "record":
        if not isinstance(v, dict):
            raise _type_error(t, v)
        return dict(v)
    return v
