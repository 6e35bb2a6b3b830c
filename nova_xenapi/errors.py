"""Exceptions raised by the session layer, free of secrets."""

from __future__ import annotations


class XenAPIError(Exception):
    """A XAPI failure: ``details`` is XAPI's ErrorDescription (code, then parameters)."""

    def __init__(self, details: list[str]) -> None:
        self.details = list(details) or ["UNKNOWN_ERROR"]
        super().__init__(str(self))

    @property
    def code(self) -> str:
        return self.details[0]

    @property
    def params(self) -> list[str]:
        return self.details[1:]

    def __str__(self) -> str:
        if not self.params:
            return self.code
        return f"{self.code}: {', '.join(self.params)}"


class HostConnectionError(Exception):
    """The host could not be reached or the connection broke."""


class TaskTimeout(Exception):
    """A XAPI task did not finish in time and was cancelled."""
