"""SM's errors as xapi reports them: ``SR_BACKEND_FAILURE_<code>``, ``["", text, ""]``.

The codes and descriptions are SM's (xapi-project/sm,
libs/sm/core/XE_SR_ERRORCODES.xml); ``opterr`` is what a driver adds in
brackets.
"""
from __future__ import annotations

from .errors import XapiError

SM_ERRORS = {
    "Unimplemented": (38, "The requested method is not supported/implemented"),
    "SRNoSpace": (44, "There is insufficient space"),
    "VDIUnavailable": (46, "The VDI is not available"),
    "SRUnavailable": (47, "The SR is not available"),
    "ISCSILogin": (68, "ISCSI login failed - check access settings for the initiator on the "
                       "storage, if CHAP is used verify CHAP credentials"),
    "NFSVersion": (72, "Required NFS server version unsupported"),
    "NFSMount": (73, "NFS mount error"),
    "ISCSIDiscovery": (83, "ISCSI discovery failed"),
    "ConfigTargetMissing": (95, "The request is missing the target parameter"),
    "ConfigTargetIQNMissing": (96, "The request is missing or has an incorrect target IQN parameter"),
    "ConfigServerPathMissing": (101, "The request is missing the serverpath parameter"),
    "ConfigServerMissing": (102, "The request is missing the server parameter"),
    "ConfigSCSIid": (107, "The SCSIid parameter is missing or incorrect"),
    "ISCSITarget": (141, "Unable to connect to ISCSI service on target"),
    "ISCSIPort": (142, "Incorrect value for iSCSI port, must be a number between 1 and 65535"),
}


def sm_error(key: str, opterr: str | None = None) -> XapiError:
    """SM's XenError ``key`` as xapi reports it."""
    code, text = SM_ERRORS[key]
    if opterr is not None:
        text += f" [opterr={opterr}]"
    return XapiError(f"SR_BACKEND_FAILURE_{code}", "", text, "")
