"""The smoke test's view into the simulated hosts: fault rules, and what each host holds.

Fault rules go through xapisim's own control API (``/_xapisim/faults``, shared
by every simulated host); what a host holds is read over XAPI itself, as an
operator would, with the hosts' certificate as the trusted CA.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable

from nova_xenapi.session import XenAPISession
from nova_xenapi.transport import TLSPolicy

from . import computes
from .state import State


class Control:
    """Fault rules and read-only XAPI sessions to every simulated host, closed on exit."""

    def __init__(self, state: State, hosts: int = 2) -> None:
        self._ca = str(state.etc / "xenserver-ca.pem")  # written by computes.bootstrap
        self._urls = [f"https://{computes.host_address(i)}:{state.port('xapisim')}"
                      for i in range(hosts)]
        password = (state.etc / "xenserver-password").read_text().strip()
        self._sessions = [XenAPISession(url, "root", password, originator="cloud-smoke",
                                        tls=TLSPolicy(ca_file=self._ca)) for url in self._urls]
        self._rule = None

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear_faults()
        for s in self._sessions:
            s.close()

    def _control(self, method: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self._urls[0]}/_xapisim/faults", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        ctx = ssl.create_default_context(cafile=self._ca)
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return json.loads(resp.read())

    def add_fault(self, rule: dict) -> None:
        self._rule = self._control("POST", rule)["id"]

    def clear_faults(self) -> None:
        self._control("DELETE")

    def wait_fired(self, timeout: float = 180.0) -> None:
        """Until the last rule added has fired (the call it matched is being held, say):
        xapisim's list of fired rules outlives the rules themselves."""
        deadline = time.monotonic() + timeout
        while not any(f["rule"] == self._rule for f in self._control("GET")["fired"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fault rule fired in {timeout:.0f} s")
            time.sleep(0.2)

    def wait_until(self, check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout:.0f} s")
            time.sleep(0.2)

    def _records(self, cls: str, keep: Callable[[dict], bool]) -> list[str]:
        return [f"{cls} {r.get('name_label') or r['uuid']}" for s in self._sessions
                for r in s.call_xenapi(f"{cls}.get_all_records").values() if keep(r)]

    def vdis(self, keep: Callable[[dict], bool]) -> list[str]:
        return self._records("VDI", keep)

    def vms(self, keep: Callable[[dict], bool]) -> list[str]:
        return self._records("VM", lambda r: not r["is_a_template"] and keep(r))
