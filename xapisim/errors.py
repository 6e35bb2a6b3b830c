"""XAPI API errors as the simulator raises them: a code and string parameters.

The codes and their parameter lists come from xapi's ``api_errors.ml`` (see
``xapi-errors.tsv`` in the shared reference); the wire layers turn an
``XapiError`` into ``Failure/ErrorDescription`` or a JSON-RPC error.
"""
from __future__ import annotations


class XapiError(Exception):
    """An error that reaches the client as ``[code, param1, ...]``."""

    def __init__(self, code: str, *params: object) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]

    def __str__(self) -> str:
        return f"{self.code}{self.params}"


class HttpError(Exception):
    """An HTTP-level failure of a handler (status code and short text)."""

    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text

    @property
    def reason(self) -> str:
        from http import HTTPStatus
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"


def handle_invalid(cls: str, ref: str) -> XapiError:
    return XapiError("HANDLE_INVALID", cls, ref)


def bad_power_state(vm: str, expected: str, actual: str) -> XapiError:
    return XapiError("VM_BAD_POWER_STATE", vm, expected.lower(), actual.lower())
