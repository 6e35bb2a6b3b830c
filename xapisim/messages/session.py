"""session.*: login, logout, local logins."""
from __future__ import annotations

from ..call import Call
from ..registry import api


@api("session", "login_with_password")
def login_with_password(call: Call, uname: str, pwd: str, version: str, originator: str) -> str:
    return call.backend.login(call.host, uname, pwd, originator)


@api("session", "slave_local_login_with_password")
def slave_local_login_with_password(call: Call, uname: str, pwd: str) -> str:
    return call.backend.login(call.host, uname, pwd, "", pool=True)


@api("session", "logout")
def logout(call: Call) -> str:
    call.backend.logout(call.session)
    return ""


@api("session", "local_logout")
def local_logout(call: Call) -> str:
    call.backend.logout(call.session)
    return ""


@api("session", "change_password")
def change_password(call: Call, old_pwd: str, new_pwd: str) -> str:
    from ..errors import XapiError
    if old_pwd != call.backend.config.password:
        raise XapiError("SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure")
    call.backend.config.password = new_pwd
    return ""


@api("session", "get_all_subject_identifiers")
def get_all_subject_identifiers(call: Call) -> list[str]:
    """No external authentication is configured, so no subject has a session."""
    return []
