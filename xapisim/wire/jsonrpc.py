"""JSON-RPC 1.0 and 2.0 on ``/jsonrpc`` as xapi answers them.

Ints are JSON numbers, datetimes strings in xapi's compact form, and errors
``["CODE", ...]`` (v1.0) or ``{"code": 1, "message": CODE, "data": [...]}``
(v2.0).
"""
from __future__ import annotations

import json


class RequestError(Exception):
    """Not a usable JSON-RPC request (xapi answers HTTP 500)."""


def parse_call(body: bytes) -> tuple[str, list, object, bool]:
    """Return (method, params, id, is_v2)."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"malformed JSON: {e}") from None
    if not isinstance(req, dict):
        raise RequestError("request is not an object")
    method = req.get("method")
    params = req.get("params")
    if not isinstance(method, str) or not isinstance(params, list):
        raise RequestError("method must be a string and params an array")
    if req.get("id") is None:
        raise RequestError("id missing or null")
    return method, params, req["id"], req.get("jsonrpc") == "2.0"


def success(v, req_id, v2: bool) -> bytes:
    if v2:
        return json.dumps({"jsonrpc": "2.0", "result": v, "id": req_id}).encode()
    return json.dumps({"result": v, "error": None, "id": req_id}).encode()


def failure(description: list[str], req_id, v2: bool) -> bytes:
    if v2:
        err = {"code": 1, "message": description[0], "data": list(description[1:])}
        return json.dumps({"jsonrpc": "2.0", "error": err, "id": req_id}).encode()
    return json.dumps({"result": None, "error": list(description), "id": req_id}).encode()
