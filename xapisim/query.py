"""XAPI's query language for ``get_all_records_where`` / ``get_all_where``.

Grammar (xapi's ``db_filter``): ``true``, ``false``, ``field "name" = "value"``
(either side may be ``field "x"`` or a literal), combined with ``and``, ``or``,
``not`` and parentheses.  Comparison is on the field's string form.
"""
from __future__ import annotations

import re

from .errors import XapiError

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def _tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise XapiError("INVALID_VALUE", expr)
        pos = m.end()
        if m.group(1):
            out.append(("(", "("))
        elif m.group(2):
            out.append((")", ")"))
        elif m.group(3):
            out.append(("=", "="))
        elif m.group(4) is not None:
            out.append(("str", m.group(4).replace('\\"', '"').replace("\\\\", "\\")))
        else:
            out.append(("word", m.group(5).lower()))
    return out


def _as_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return str(v)
    return str(v)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, kind=None, val=None):
        t = self.peek()
        if t[0] is None or (kind and t[0] != kind) or (val and t[1] != val):
            raise XapiError("INVALID_VALUE", self.expr)
        self.i += 1
        return t

    def parse(self):
        e = self.disj()
        if self.i != len(self.toks):
            raise XapiError("INVALID_VALUE", self.expr)
        return e

    def disj(self):
        left = self.conj()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conj(self):
        left = self.unary()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def unary(self):
        t = self.peek()
        if t == ("word", "not"):
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        if t == ("(", "("):
            self.take()
            e = self.disj()
            self.take(")")
            return e
        if t == ("word", "true"):
            self.take()
            return lambda r: True
        if t == ("word", "false"):
            self.take()
            return lambda r: False
        left = self.operand()
        self.take("=")
        right = self.operand()
        return lambda r: left(r) == right(r)

    def operand(self):
        t = self.take()
        if t == ("word", "field"):
            name = self.take("str")[1]
            return lambda r: _as_text(r.get(name, ""))
        if t[0] == "str":
            return lambda r, v=t[1]: v
        raise XapiError("INVALID_VALUE", self.expr)


def compile_query(expr: str):
    """Return a predicate over records for the query ``expr``."""
    return _Parser(expr).parse()
