"""host.*: plugins, time, memory, enable/disable."""
from __future__ import annotations

import time

from ..call import Call
from ..plugins import run_plugin
from ..registry import api
from ..values import XDateTime, now
from .vm import host_memory_free


@api("host", "call_plugin")
def call_plugin(call: Call, host: str, plugin: str, fn: str, args: dict) -> str:
    call.store.get("host", host)
    return run_plugin(call.backend.dom0_root(host), call.session, plugin, fn, args)


@api("host", "get_servertime")
def get_servertime(call: Call, host: str) -> str:
    call.store.get("host", host)
    return now()


@api("host", "get_server_localtime")
def get_server_localtime(call: Call, host: str) -> str:
    call.store.get("host", host)
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%S", time.localtime()))


@api("host", "compute_free_memory")
def compute_free_memory(call: Call, host: str) -> int:
    with call.store.lock:
        return host_memory_free(call.backend, host)


@api("host", "compute_memory_overhead")
def compute_memory_overhead(call: Call, host: str) -> int:
    call.store.get("host", host)
    return 0


@api("host", "disable")
def disable(call: Call, host: str, auto_enable: bool = True) -> str:
    call.store.set("host", host, enabled=False)
    return ""


@api("host", "enable")
def enable(call: Call, host: str) -> str:
    call.store.set("host", host, enabled=True)
    return ""


@api("host", "get_uncooperative_resident_VMs")
def get_uncooperative_resident_vms(call: Call, host: str) -> list:
    call.store.get("host", host)
    return []
