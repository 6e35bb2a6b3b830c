"""Calls into the nova-xenapi dom0 plugins, and the check that the right set is installed."""

from __future__ import annotations

import base64
import zlib

from nova import exception
from oslo_log import log as logging

from nova_xenapi.dom0 import PLUGIN_API_VERSION
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession

LOG = logging.getLogger(__name__)

INSTALL_HINT = "install the plugins that match this driver with xenapi-bootstrap"


class PluginsMissing(exception.NovaException):
    msg_fmt = "the nova-xenapi dom0 plugins are not installed on the host: %(hint)s"


class PluginsMismatch(exception.NovaException):
    msg_fmt = ("the host has nova-xenapi dom0 plugins version %(found)s, this driver needs "
               "%(wanted)s or a later minor version: %(hint)s")


def call(session: XenAPISession, plugin: str, fn: str, args: dict[str, str] | None = None) -> str:
    try:
        return session.call_plugin(plugin, fn, args or {})
    except XenAPIError as exc:
        if exc.code == "XENAPI_MISSING_PLUGIN":
            raise PluginsMissing(hint=INSTALL_HINT) from None
        raise


def installed_version(session: XenAPISession) -> str | None:
    """The version of the plugin set on the host, or None if there is none."""
    try:
        return call(session, "nova_plugin_version.py", "get_version")
    except PluginsMissing:
        return None


def check_version(session: XenAPISession) -> bool:
    """True if a matching set is installed; raise if a different one is; False if none is."""
    found = installed_version(session)
    if found is None:
        LOG.info("No nova-xenapi dom0 plugins on the host; features that need them will say so")
        return False
    if not compatible(found):
        raise PluginsMismatch(found=found, wanted=PLUGIN_API_VERSION, hint=INSTALL_HINT)
    return True


def compatible(found: str) -> bool:
    """Same major version (same calls), and at least this driver's minor (the plugins it uses)."""
    try:
        have = tuple(int(p) for p in found.split("."))
    except ValueError:
        return False
    want = tuple(int(p) for p in PLUGIN_API_VERSION.split("."))
    return len(have) == 2 and have[0] == want[0] and have[1] >= want[1]


def console_log(session: XenAPISession, domid: int) -> str:
    """The tail of a running domain's console log."""
    try:
        encoded = call(session, "console.py", "get_console_log", {"dom_id": str(domid)})
    except XenAPIError as exc:
        if exc.code == "NO_CONSOLE_LOG":
            return ""  # the guest has written nothing yet
        raise
    return zlib.decompress(base64.b64decode(encoded)).decode("utf-8", "replace")
