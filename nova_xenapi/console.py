"""The VNC console of an instance, through XAPI's /console handler."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from nova import exception
from nova.console import type as ctype

from nova_xenapi import vm
from nova_xenapi.session import XenAPISession


def vnc_console(session: XenAPISession, instance: Any, http_port: int) -> ctype.ConsoleVNC:
    """Where nova-novncproxy connects: the resident host's /console for this VM's RFB console.

    The proxy opens a plain TCP connection and sends ``CONNECT``: a console
    whose location is HTTPS (xapi's 443) is reached on the host's plain-HTTP
    port ``http_port`` instead, which a host set to ``https_only`` does not
    have."""
    vm_ref = vm.find(session, instance)
    for ref in session.call_xenapi("VM.get_consoles", vm_ref):
        rec = session.get_record("console", ref)
        if rec and rec["protocol"] == "rfb":
            loc = urlsplit(rec["location"])
            port = loc.port or 80
            if loc.scheme == "https":
                host = session.call_xenapi("VM.get_resident_on", vm_ref)
                if session.call_xenapi("host.get_https_only", host):
                    raise exception.ConsoleTypeUnavailable(
                        console_type="vnc (the host serves XAPI over HTTPS only)")
                port = http_port
            path = session.console_path(loc.path or "/console", ref)
            return ctype.ConsoleVNC(host=loc.hostname, port=port, internal_access_path=path)
    raise exception.ConsoleTypeUnavailable(console_type="vnc")
