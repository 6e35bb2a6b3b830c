"""The VNC console of an instance, through XAPI's /console handler."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from nova import exception
from nova.console import type as ctype

from nova_xenapi import vm
from nova_xenapi.session import XenAPISession


def vnc_console(session: XenAPISession, instance: Any) -> ctype.ConsoleVNC:
    """Where nova-novncproxy connects: the resident host's /console for this VM's RFB console."""
    vm_ref = vm.find(session, instance)
    for ref in session.call_xenapi("VM.get_consoles", vm_ref):
        rec = session.get_record("console", ref)
        if rec and rec["protocol"] == "rfb":
            loc = urlsplit(rec["location"])
            port = loc.port or (443 if loc.scheme == "https" else 80)
            path = session.console_path(loc.path or "/console", ref)
            return ctype.ConsoleVNC(host=loc.hostname, port=port, internal_access_path=path)
    raise exception.ConsoleTypeUnavailable(console_type="vnc")
