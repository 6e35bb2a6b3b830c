"""Turns a decoded call into a result or an XAPI error, in xapi's check order.

Order (``gen_server.ml``): name lookup, parameter count (counting defaulted
parameters), session (``SESSION_INVALID``, then ``HOST_IS_SLAVE`` on a pool
member), removed messages, Async support, then the message itself.  Errors
raised inside become ``[code, params]`` as ``ExnHelper`` would.
"""
from __future__ import annotations

import functools
import logging
import traceback

from . import generic, messages, tasks
from .call import Call
from .datamodel import NULL_REF, ClassDef, Message, classes
from .errors import XapiError
from .registry import HANDLERS
from .values import coerce

LOG = logging.getLogger(__name__)
messages.load_all()

# Sessions are not needed by these (their first parameter is not a session).
_EXTRA_WHERE = ("get_all_records_where", "get_all_where")


@functools.lru_cache(maxsize=4096)
def _lookup(name: str) -> tuple[ClassDef, Message] | None:
    cls_name, sep, msg_name = name.partition(".")
    if not sep:
        cls_name, sep, msg_name = name.partition("_")
        # alternative wire name Class_message: class names may contain '_'
        for cname in sorted(classes(), key=len, reverse=True):
            if name.startswith(cname + "_"):
                cls_name, msg_name = cname, name[len(cname) + 1:]
                break
    cdef = classes().get(cls_name)
    if cdef is None:
        return None
    msg = cdef.messages.get(msg_name)
    if msg is None and msg_name in _EXTRA_WHERE and "get_all_records" in cdef.messages:
        msg = _where_message(cdef, msg_name)
    if msg is None:
        return None
    return cdef, msg


def _where_message(cdef: ClassDef, name: str) -> Message:
    from .datamodel import Param, parse_type
    result = f"({cdef.name} ref -> {cdef.name} record) map" if name == "get_all_records_where" \
        else f"{cdef.name} ref set"
    return Message(cdef.name, name, [Param("session_id", parse_type("session ref")),
                                     Param("expr", parse_type("string"))],
                   parse_type(result), True, False, False)


def all_wire_names() -> list[str]:
    names = []
    for cdef in classes().values():
        for m in cdef.messages.values():
            if not m.removed:
                names.append(m.wire_name)
        if "get_all_records" in cdef.messages:
            names += [f"{cdef.name}.{n}" for n in _EXTRA_WHERE]
    return sorted(names)


class Dispatcher:
    """Dispatches calls arriving at one host of a backend."""

    def __init__(self, backend, host_ref: str) -> None:
        self.backend = backend
        self.host = host_ref

    def dispatch(self, name: str, params: list):
        is_async = name.startswith("Async.")
        base = name[6:] if is_async else name
        found = _lookup(base)
        if found is None:
            if params:
                self._check_session(params[0], base)
            raise XapiError("MESSAGE_METHOD_UNKNOWN", base)
        cdef, msg = found
        wire = msg.wire_name
        session_params = 1 if msg.takes_session else 0
        declared = msg.params[session_params:]
        required = [p for p in declared if not p.has_default]
        received = len(params) - session_params
        if len(required) == len(declared):
            ok = received == len(declared)
        else:
            ok = received >= len(required)
        if not ok:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", wire, len(required), max(received, 0))
        session = NULL_REF
        if msg.takes_session:
            session = self._check_session(params[0], wire)
        if msg.removed:
            raise XapiError("MESSAGE_REMOVED")
        if is_async and not msg.is_async:
            raise XapiError("Fault", f"No async mode for this operation (rpc: {name})")
        injected = self.backend.faults.before_call(self.backend, self.host, wire,
                                                   params[session_params:], is_async)
        args = []
        for i, p in enumerate(declared):
            if i < received:
                args.append(coerce(p.type, params[session_params + i]))
            else:
                args.append(p.default)
        call = Call(self.backend, self.host, session=session, wire_name=wire)
        if is_async:
            if injected is not None:
                return tasks.run_async(call, name, lambda c: _raise(injected))
            return tasks.run_async(call, name, lambda c: self._run(c, cdef, msg, args))
        return self._run(call, cdef, msg, args)

    def is_quick(self, name: str) -> bool:
        """Whether a call is one of xapi's generated messages, which never block: the RPC
        loop answers those itself, anything else in a thread of its own."""
        if name.startswith("Async."):
            return False
        found = _lookup(name)
        if found is None:
            return True  # an unknown message fails at once
        cdef, msg = found
        return (cdef.name, msg.name) not in HANDLERS and (msg.implicit or msg.name in _EXTRA_WHERE)

    def _check_session(self, ref, wire: str) -> str:
        backend = self.backend
        if not isinstance(ref, str) or not backend.session_valid(ref):
            raise XapiError("SESSION_INVALID", ref if isinstance(ref, str) else str(ref))
        if not backend.is_master(self.host) and not backend.session_is_pool(ref):
            raise XapiError("HOST_IS_SLAVE", backend.master_address())
        backend.touch_session(ref)
        return ref

    def _run(self, call: Call, cdef: ClassDef, msg: Message, args: list):
        handler = HANDLERS.get((cdef.name, msg.name))
        try:
            if handler is not None:
                return handler(call, *args)
            if msg.implicit or msg.name in _EXTRA_WHERE:
                return generic.run(call, cdef, msg, args)
            raise XapiError("NOT_IMPLEMENTED", msg.wire_name)
        except XapiError:
            raise
        except Exception as e:  # ExnHelper: anything else is INTERNAL_ERROR
            LOG.error("internal error in %s: %s", msg.wire_name, traceback.format_exc())
            raise XapiError("INTERNAL_ERROR", f"{type(e).__name__}: {e}") from e


def _raise(error: XapiError):
    raise error
