"""host.*: plugins, time, memory, enable/disable, and power (reboot, shutdown, power_on).

Power follows xapi_host.ml: ``reboot``/``shutdown`` need the host disabled
(``HOST_NOT_DISABLED``), then every VM still running on it is shut down, as
prepare_for_poweroff does.  A rebooted host is back at once, enabled, with a
new ``other_config:boot_time``; a host that was shut down stops answering
(its address refuses connections) and its metrics say it is not live until
``host.power_on`` (called through another member), which needs a
``power_on_mode`` (``HOST_POWER_ON_MODE_DISABLED``; unverified: the check
is in xapi's forwarding layer, and the mode's plugin is not simulated).
Unlike a real reboot of a pool master, sessions survive it here.
"""
from __future__ import annotations

import time

from ..call import Call
from ..datamodel import NULL_REF
from ..errors import XapiError
from ..plugins import run_plugin
from ..registry import api
from ..values import XDateTime, now
from .vm import bring_down, host_memory_free


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


@api("host", "set_https_only")
def set_https_only(call: Call, host: str, value: bool) -> str:
    """xapi_host.ml: the firewall closes the host's plain-HTTP port (80), then the field is set;
    xapisim's plain listener of that host then drops every connection."""
    call.store.set("host", host, https_only=bool(value))
    return ""


@api("host", "get_uncooperative_resident_VMs")
def get_uncooperative_resident_vms(call: Call, host: str) -> list:
    call.store.get("host", host)
    return []


def _power_off(call: Call, host: str) -> dict:
    store = call.store
    rec = store.get("host", host)
    if rec["enabled"]:
        raise XapiError("HOST_NOT_DISABLED")
    for vm in list(rec["resident_VMs"]):  # bring_down takes each off this list
        vm_rec = store.get("VM", vm)
        if not vm_rec["is_control_domain"] and vm_rec["power_state"] in ("Running", "Paused"):
            bring_down(call, vm)
    return rec


def _booted(call: Call, host: str) -> None:
    store = call.store
    rec = store.get("host", host)
    stamp = f"{time.time():.0f}."
    store.set("host", host, enabled=True,
              other_config={**rec["other_config"], "boot_time": stamp, "agent_start_time": stamp})
    if rec["metrics"] != NULL_REF:
        store.set("host_metrics", rec["metrics"], live=True)


@api("host", "reboot")
def reboot(call: Call, host: str) -> str:
    with call.store.lock:
        _power_off(call, host)
        _booted(call, host)
    return ""


@api("host", "shutdown")
def shutdown(call: Call, host: str) -> str:
    with call.store.lock:
        rec = _power_off(call, host)
        if rec["metrics"] != NULL_REF:
            call.store.set("host_metrics", rec["metrics"], live=False)
    call.backend.faults.killed_hosts.add(rec["address"])
    return ""


@api("host", "power_on")
def power_on(call: Call, host: str) -> str:
    with call.store.lock:
        rec = call.store.get("host", host)
        if not rec["power_on_mode"]:
            raise XapiError("HOST_POWER_ON_MODE_DISABLED")
        call.backend.faults.killed_hosts.discard(rec["address"])
        _booted(call, host)
    return ""


@api("host", "set_power_on_mode")
def set_power_on_mode(call: Call, host: str, power_on_mode: str, power_on_config: dict) -> str:
    call.store.set("host", host, power_on_mode=power_on_mode, power_on_config=dict(power_on_config))
    return ""


@api("host", "get_management_interface")
def get_management_interface(call: Call, host: str) -> str:
    store = call.store
    with store.lock:
        for pif in store.get("host", host)["PIFs"]:
            if store.get("PIF", pif)["management"]:
                return pif
    raise XapiError("INTERNAL_ERROR", "Not_found")  # xapi_host.ml raises Not_found


@api("host", "get_log")
def get_log(call: Call, host: str) -> str:
    """Deprecated in xapi: it answers an empty string."""
    call.store.get("host", host)
    return ""


@api("host", "dmesg")
def dmesg(call: Call, host: str) -> str:
    rec = call.store.get("host", host)
    return (f"[    0.000000] Linux version {rec['software_version'].get('linux', '')} "
            f"(xapisim) #1 SMP\n[    0.000000] Command line: root=LABEL=root-xapisim ro\n")


@api("host", "get_sched_gran")
def get_sched_gran(call: Call, host: str) -> str:
    """Xen's default scheduling granularity."""
    call.store.get("host", host)
    return "cpu"
