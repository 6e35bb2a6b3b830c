"""VM power lifecycle: create, start, shutdown, reboot, pause, suspend, destroy, memory.

Memory accounting follows xapi without ballooning: a VM needs its
``memory_static_max`` plus ``memory_overhead`` on the host it runs on
(``HOST_NOT_ENOUGH_FREE_MEMORY [needed, available]`` otherwise), and
``host_metrics.memory_free`` is kept up to date.
"""
from __future__ import annotations

import time

from .. import dom0_ovs, guest_agent
from ..call import Call
from ..datamodel import NULL_REF
from ..errors import XapiError, bad_power_state
from ..generic import create as generic_create
from ..registry import api
from ..values import from_epoch, now
from . import vtpm as vtpms
from .lifecycle import Operation, check_vm

MIB = 1 << 20
DEVICE_NAMES = "abcdefghijklmnop"


def overhead(rec: dict) -> int:
    """A memory overhead in the spirit of xapi's (page tables, shadow, per vCPU)."""
    static_max = int(rec["memory_static_max"])
    mib = static_max // (128 * MIB) + int(rec["VCPUs_max"]) + 1
    return mib * MIB


def vm_memory_need(rec: dict) -> int:
    return int(rec["memory_static_max"]) + int(rec["memory_overhead"])


def host_memory_free(backend, host: str) -> int:
    store = backend.store
    hrec = store.get("host", host)
    total = store.get("host_metrics", hrec["metrics"])["memory_total"]
    used = 0
    for vm in hrec["resident_VMs"]:
        r = store.tables["VM"].get(vm)
        if r is None:
            continue
        used += int(r["memory_static_max"]) if r["is_control_domain"] else vm_memory_need(r)
    for r in store.tables["VM"].values():  # VMs being started here
        if r["scheduled_to_be_resident_on"] == host and r["resident_on"] != host:
            used += vm_memory_need(r)
    return total - used


def update_host_memory(backend, host: str) -> None:
    if host == NULL_REF or not backend.store.exists("host", host):
        return
    store = backend.store
    store.set("host_metrics", store.get("host", host)["metrics"],
              memory_free=host_memory_free(backend, host), last_updated=now())


@api("VM", "create")
def create(call: Call, struct: dict) -> str:
    from ..datamodel import classes
    store = call.store
    with store.lock:
        ref = generic_create(call, classes()["VM"], struct)
        metrics = store.create("VM_metrics", {"memory_actual": 0, "VCPUs_number": 0,
                                              "install_time": now(), "last_updated": now(),
                                              "start_time": from_epoch(0)})
        rec = store.get("VM", ref)
        store.set("VM", ref, metrics=metrics, memory_overhead=overhead(rec), domid=-1)
        call.backend.refresh("VM", ref)
        return ref


def _sr_visible(store, sr: str, host: str) -> bool:
    srec = store.tables["SR"].get(sr)
    if srec is None:
        return False
    return any(store.tables["PBD"].get(p, {}).get("host") == host and
               store.tables["PBD"][p]["currently_attached"] for p in srec["PBDs"])


def check_host_for(call: Call, vm: str, host: str) -> None:
    store = call.store
    rec = store.get("VM", vm)
    hrec = store.get("host", host)
    if not hrec["enabled"]:
        raise XapiError("HOST_DISABLED", host)
    for vbd in rec["VBDs"]:
        v = store.get("VBD", vbd)
        if v["empty"] or v["VDI"] == NULL_REF:
            continue
        sr = store.get("VDI", v["VDI"])["SR"]
        if not _sr_visible(store, sr, host):
            raise XapiError("VM_REQUIRES_SR", vm, sr)
    need = vm_memory_need(rec)
    free = host_memory_free(call.backend, host)
    if need > free:
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


def choose_host(call: Call, vm: str) -> str:
    store = call.store
    rec = store.get("VM", vm)
    candidates = list(store.all("host"))
    if rec["affinity"] in candidates:
        candidates.remove(rec["affinity"])
        candidates.insert(0, rec["affinity"])
    errors: list[XapiError] = []
    for h in candidates:
        try:
            check_host_for(call, vm, h)
            return h
        except XapiError as e:
            errors.append(e)
    for code in ("HOST_NOT_ENOUGH_FREE_MEMORY", "VM_REQUIRES_SR"):
        for e in errors:
            if e.code == code:
                raise e
    raise errors[0] if errors else XapiError("NO_HOSTS_AVAILABLE")


def _device_name(userdevice: str) -> str:
    try:
        n = int(userdevice)
    except ValueError:
        return userdevice
    return f"xvd{DEVICE_NAMES[n]}" if 0 <= n < len(DEVICE_NAMES) else userdevice


def _write_console_log(backend, host: str, domid: int, rec: dict) -> None:
    """What the guest's serial console would show, where dom0 keeps it (/var/log/xen/guest)."""
    try:
        log = backend.dom0_root(host) / "var/log/xen/guest" / f"console.{domid}"
        with open(log, "a") as f:
            f.write(f"[    0.000000] xapisim: domain {domid} ({rec['name_label']}) started\n"
                    f"{rec['name_label']} login: \n")
    except (OSError, KeyError):
        pass  # a host without a dom0 directory (should not happen) just has no console log


def vif_hotplug(call: Call, host: str, vif: str, plugged: bool) -> None:
    """What the host's vif hotplug script does when a VIF of a running VM comes or goes."""
    store = call.store
    v = store.get("VIF", vif)
    vm = store.get("VM", v["VM"])
    root = call.backend.dom0_root(host)
    if plugged:
        dom0_ovs.vif_plugged(root, v, vm, store.get("network", v["network"]))
    else:
        dom0_ovs.vif_unplugged(root, v, vm)


def _console_base(backend, address: str) -> str:
    """Where the host's /console handler is: xapi's location names HTTPS on 443; a simulated
    host on another port (or plain HTTP) says so, so that clients can follow it."""
    world = getattr(backend, "world", None)
    return world.url_of(address) if world is not None and world.port else f"https://{address}"


def bring_up(call: Call, vm: str, host: str, paused: bool) -> None:
    """Make a VM resident on ``host`` with its devices attached."""
    store = call.store
    backend = call.backend
    rec = store.get("VM", vm)
    for vbd in rec["VBDs"]:
        v = store.get("VBD", vbd)
        if not v["empty"] and v["VDI"] != NULL_REF and not store.exists("VDI", v["VDI"]):
            raise XapiError("VDI_MISSING", NULL_REF, v["VDI"])
    vtpms.before_boot(call, vm)
    domid = backend.next_domid()
    store.set("VM", vm, power_state="Paused" if paused else "Running", resident_on=host,
              scheduled_to_be_resident_on=NULL_REF, domid=domid)
    _write_console_log(backend, host, domid, rec)
    dom0 = backend.dom0_root(host)
    guest_agent.write_vm_data(dom0, domid, rec["xenstore_data"])
    if guest_agent.boot_disk_has_agent(backend, vm):
        backend.agents.started(vm, host, domid, dom0)
    hvm = rec["HVM_boot_policy"] != ""
    if store.exists("VM_metrics", rec["metrics"]):
        store.set("VM_metrics", rec["metrics"], memory_actual=int(rec["memory_dynamic_max"]),
                  VCPUs_number=int(rec["VCPUs_at_startup"]), start_time=now(),
                  last_updated=now(), current_domain_type="hvm" if hvm else "pv")
    for vbd in rec["VBDs"]:
        v = store.get("VBD", vbd)
        store.set("VBD", vbd, currently_attached=not v["empty"],
                  device=v["device"] or _device_name(v["userdevice"]))
        backend.refresh("VBD", vbd)
    for vif in rec["VIFs"]:
        store.set("VIF", vif, currently_attached=True)
        vif_hotplug(call, host, vif, True)
        backend.refresh("VIF", vif)
    address = store.get("host", host)["address"]
    for proto in (("rfb", "vt100") if hvm else ("vt100",)):
        con = store.create("console", {"protocol": proto, "VM": vm, "other_config": {}})
        store.set("console", con, location=f"{_console_base(backend, address)}/console?uuid="
                  f"{store.get('console', con)['uuid']}")
    update_host_memory(backend, host)
    backend.refresh("VM", vm)


def bring_down(call: Call, vm: str, power_state: str = "Halted") -> None:
    store = call.store
    backend = call.backend
    rec = store.get("VM", vm)
    host = rec["resident_on"]
    for vbd in rec["VBDs"]:
        store.set("VBD", vbd, currently_attached=False)
        backend.refresh("VBD", vbd)
    for vif in rec["VIFs"]:
        store.set("VIF", vif, currently_attached=False)
        vif_hotplug(call, host, vif, False)
        backend.refresh("VIF", vif)
    for con in list(rec["consoles"]):
        store.destroy("console", con)
    if host in backend.hosts and rec["domid"] >= 0:
        backend.agents.stopped(host, rec["domid"])
        guest_agent.clear_domain(backend.dom0_root(host), rec["domid"])
    store.set("VM", vm, power_state=power_state, resident_on=NULL_REF, domid=-1)
    if store.exists("VM_metrics", rec["metrics"]):
        store.set("VM_metrics", rec["metrics"], memory_actual=0, VCPUs_number=0)
    update_host_memory(backend, host)
    backend.refresh("VM", vm)


def _start(call: Call, vm: str, host: str | None, paused: bool, op: str) -> str:
    store = call.store
    with Operation(call, "VM", vm, op):
        with store.lock:
            if host is None:
                host = choose_host(call, vm)
            else:
                check_host_for(call, vm, host)
            store.set("VM", vm, scheduled_to_be_resident_on=host)
        try:
            delay = call.backend.config.boot_delay
            if delay:
                time.sleep(delay)
            call.progress(0.5)
            with store.lock:
                bring_up(call, vm, host, paused)
        except BaseException:
            with store.lock:
                if store.exists("VM", vm):
                    store.set("VM", vm, scheduled_to_be_resident_on=NULL_REF)
            raise
    return ""


@api("VM", "start", cancellable=True)
def start(call: Call, vm: str, start_paused: bool, force: bool) -> str:
    return _start(call, vm, None, start_paused, "start")


@api("VM", "start_on", cancellable=True)
def start_on(call: Call, vm: str, host: str, start_paused: bool, force: bool) -> str:
    call.store.get("host", host)
    return _start(call, vm, host, start_paused, "start_on")


def _halt(call: Call, vm: str, op: str) -> str:
    with Operation(call, "VM", vm, op):
        with call.store.lock:
            bring_down(call, vm)
    return ""


@api("VM", "clean_shutdown")
def clean_shutdown(call: Call, vm: str) -> str:
    return _halt(call, vm, "clean_shutdown")


@api("VM", "hard_shutdown")
def hard_shutdown(call: Call, vm: str) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, "hard_shutdown")
        if rec["power_state"] == "Suspended":
            with Operation(call, "VM", vm, "hard_shutdown"):
                _drop_suspend_image(call, vm)
                store.set("VM", vm, power_state="Halted")
            return ""
    return _halt(call, vm, "hard_shutdown")


@api("VM", "shutdown")
def shutdown(call: Call, vm: str) -> str:
    rec = call.store.get("VM", vm)
    if rec["power_state"] == "Running":
        return _halt(call, vm, "shutdown")
    return hard_shutdown(call, vm)


def _reboot(call: Call, vm: str, op: str) -> str:
    store = call.store
    with Operation(call, "VM", vm, op):
        with store.lock:
            rec = store.get("VM", vm)
            host = rec["resident_on"]
            bring_down(call, vm)
            bring_up(call, vm, host, False)
    return ""


@api("VM", "clean_reboot")
def clean_reboot(call: Call, vm: str) -> str:
    return _reboot(call, vm, "clean_reboot")


@api("VM", "hard_reboot")
def hard_reboot(call: Call, vm: str) -> str:
    return _reboot(call, vm, "hard_reboot")


@api("VM", "pause")
def pause(call: Call, vm: str) -> str:
    with Operation(call, "VM", vm, "pause"):
        call.store.set("VM", vm, power_state="Paused")
    call.backend.refresh("VM", vm)
    return ""


@api("VM", "unpause")
def unpause(call: Call, vm: str) -> str:
    with Operation(call, "VM", vm, "unpause"):
        call.store.set("VM", vm, power_state="Running")
    call.backend.refresh("VM", vm)
    return ""


def _suspend_sr(call: Call, rec: dict) -> str:
    """The VM's suspend_SR, else the pool's suspend_image_SR, else its host's (xapi's choice)."""
    store = call.store
    host = rec["resident_on"]
    host_sr = store.get("host", host)["suspend_image_sr"] if store.exists("host", host) else NULL_REF
    for sr in (rec["suspend_SR"], store.get("pool", call.backend.pool_ref)["suspend_image_SR"],
               host_sr):
        if sr != NULL_REF and store.exists("SR", sr):
            return sr
    raise XapiError("VM_NO_SUSPEND_SR", rec["uuid"])


def _drop_suspend_image(call: Call, vm: str) -> None:
    from .vdi import destroy_vdi
    store = call.store
    vdi = store.get("VM", vm)["suspend_VDI"]
    store.set("VM", vm, suspend_VDI=NULL_REF)
    if vdi != NULL_REF and store.exists("VDI", vdi):
        destroy_vdi(call, vdi)


@api("VM", "suspend")
def suspend(call: Call, vm: str) -> str:
    from .vdi import new_vdi
    store = call.store
    with Operation(call, "VM", vm, "suspend"):
        with store.lock:
            rec = store.get("VM", vm)
            sr = _suspend_sr(call, rec)
            vdi = new_vdi(call, sr, f"Suspend image for {rec['name_label']}",
                          int(rec["memory_static_max"]) + 4 * MIB, "suspend")
            store.set("VM", vm, suspend_VDI=vdi, last_booted_record="")
            bring_down(call, vm, "Suspended")
    return ""


@api("VM", "resume", cancellable=True)
def resume(call: Call, vm: str, start_paused: bool, force: bool) -> str:
    return _resume(call, vm, None, start_paused, "resume")


@api("VM", "resume_on", cancellable=True)
def resume_on(call: Call, vm: str, host: str, start_paused: bool, force: bool) -> str:
    call.store.get("host", host)
    return _resume(call, vm, host, start_paused, "resume_on")


def _resume(call: Call, vm: str, host: str | None, paused: bool, op: str) -> str:
    store = call.store
    with Operation(call, "VM", vm, op):
        with store.lock:
            host = host or choose_host(call, vm)
            check_host_for(call, vm, host)
            bring_up(call, vm, host, paused)
            _drop_suspend_image(call, vm)
    return ""


@api("VM", "power_state_reset")
def power_state_reset(call: Call, vm: str) -> str:
    """xapi_vm.ml power_state_reset: for VMs whose host failed, never to lose a live domain.

    dom0 cannot be reset (CANNOT_RESET_CONTROL_DOMAIN); a running VM on the
    host taking the call still has its domain (DOMAIN_EXISTS), one on another
    host that is alive is that host's business (HOST_IS_LIVE).
    """
    store = call.store
    with store.lock:
        rec = store.get("VM", vm)
        if rec["is_control_domain"]:
            raise XapiError("CANNOT_RESET_CONTROL_DOMAIN", vm)
        if rec["power_state"] in ("Running", "Paused"):
            host = rec["resident_on"]
            if host == call.host:
                raise XapiError("DOMAIN_EXISTS", vm)
            if store.exists("host", host) and store.get(
                    "host_metrics", store.get("host", host)["metrics"])["live"]:
                raise XapiError("HOST_IS_LIVE", host)
            bring_down(call, vm)
        elif rec["power_state"] == "Suspended":
            _drop_suspend_image(call, vm)
            store.set("VM", vm, power_state="Halted")
        call.backend.refresh("VM", vm)
    return ""


@api("VM", "destroy")
def destroy(call: Call, vm: str) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, "destroy")
        if rec["power_state"] == "Suspended":
            _drop_suspend_image(call, vm)
        for vbd in list(rec["VBDs"]):
            store.destroy("VBD", vbd)
        for vif in list(rec["VIFs"]):
            store.destroy("VIF", vif)
        for vtpm in list(rec["VTPMs"]):
            vtpms.remove(store, vtpm)
        for con in list(rec["consoles"]):
            store.destroy("console", con)
        for child in ("metrics", "guest_metrics"):
            cls = "VM_metrics" if child == "metrics" else "VM_guest_metrics"
            if rec[child] != NULL_REF and store.exists(cls, rec[child]):
                store.destroy(cls, rec[child])
        store.destroy("VM", vm)
    call.backend.agents.forget(vm)
    return ""


def _set_memory(call: Call, vm: str, op: str, **values) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, op)
        merged = {k: int(rec[k]) for k in ("memory_static_min", "memory_dynamic_min",
                                          "memory_dynamic_max", "memory_static_max")}
        merged.update({k: int(v) for k, v in values.items()})
        if not (merged["memory_static_min"] <= merged["memory_dynamic_min"]
                <= merged["memory_dynamic_max"] <= merged["memory_static_max"]):
            raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")
        store.set("VM", vm, **merged)
        store.set("VM", vm, memory_overhead=overhead(store.get("VM", vm)))
        if rec["power_state"] == "Running":
            update_host_memory(call.backend, rec["resident_on"])
        call.backend.refresh("VM", vm)
    return ""


@api("VM", "set_memory_limits")
def set_memory_limits(call: Call, vm: str, smin: int, smax: int, dmin: int, dmax: int) -> str:
    return _set_memory(call, vm, "changing_memory_limits", memory_static_min=smin,
                       memory_static_max=smax, memory_dynamic_min=dmin, memory_dynamic_max=dmax)


@api("VM", "set_memory")
def set_memory(call: Call, vm: str, value: int) -> str:
    return _set_memory(call, vm, "changing_memory_limits", memory_static_max=value,
                       memory_dynamic_min=value, memory_dynamic_max=value)


@api("VM", "set_memory_static_range")
def set_memory_static_range(call: Call, vm: str, smin: int, smax: int) -> str:
    return _set_memory(call, vm, "changing_static_range", memory_static_min=smin,
                       memory_static_max=smax)


@api("VM", "set_memory_dynamic_range")
def set_memory_dynamic_range(call: Call, vm: str, dmin: int, dmax: int) -> str:
    return _set_memory(call, vm, "changing_dynamic_range", memory_dynamic_min=dmin,
                       memory_dynamic_max=dmax)


for _field, _op in (("memory_static_max", "changing_static_range"),
                    ("memory_static_min", "changing_static_range"),
                    ("memory_dynamic_max", "changing_dynamic_range"),
                    ("memory_dynamic_min", "changing_dynamic_range")):
    api("VM", f"set_{_field}")(
        lambda call, vm, value, _f=_field, _o=_op: _set_memory(call, vm, _o, **{_f: value}))


@api("VM", "set_VCPUs_max")
def set_vcpus_max(call: Call, vm: str, value: int) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, "changing_VCPUs")
        if value < 1 or value < int(rec["VCPUs_at_startup"]):
            raise XapiError("VALUE_NOT_SUPPORTED", "VCPUs_max", str(value),
                            "VCPUs_max must be >= VCPUs_at_startup and > 0")
        store.set("VM", vm, VCPUs_max=value)
        store.set("VM", vm, memory_overhead=overhead(store.get("VM", vm)))
    return ""


@api("VM", "set_VCPUs_at_startup")
def set_vcpus_at_startup(call: Call, vm: str, value: int) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, "changing_VCPUs")
        if value < 1 or value > int(rec["VCPUs_max"]):
            raise XapiError("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", str(value),
                            "VCPUs_at_startup must be in the range 1 to VCPUs_max")
        store.set("VM", vm, VCPUs_at_startup=value)
    return ""


@api("VM", "set_VCPUs_number_live")
def set_vcpus_number_live(call: Call, vm: str, n: int) -> str:
    store = call.store
    with store.lock:
        rec = check_vm(store, vm, "changing_VCPUs_live")
        if n < 1 or n > int(rec["VCPUs_max"]):
            raise XapiError("VALUE_NOT_SUPPORTED", "VCPU", str(n), "out of range")
        store.set("VM_metrics", rec["metrics"], VCPUs_number=n)
    return ""


@api("VM", "set_HVM_boot_policy")
def set_hvm_boot_policy(call: Call, vm: str, value: str) -> str:
    store = call.store
    with store.lock:
        store.get("VM", vm)
        store.set("VM", vm, HVM_boot_policy=value, domain_type="hvm" if value else "pv")
    return ""


@api("VM", "set_domain_type")
def set_domain_type(call: Call, vm: str, value: str) -> str:
    call.store.get("VM", vm)
    call.store.set("VM", vm, domain_type=value,
                   HVM_boot_policy="BIOS order" if value in ("hvm", "pv_in_pvh", "pvh") else "")
    return ""


@api("VM", "get_allowed_VBD_devices")
def get_allowed_vbd_devices(call: Call, vm: str) -> list[str]:
    store = call.store
    rec = store.get("VM", vm)
    used = {store.get("VBD", v)["userdevice"] for v in rec["VBDs"]}
    limit = 255 if rec["HVM_boot_policy"] else 16
    return [str(i) for i in range(min(limit, 16)) if str(i) not in used]


@api("VM", "get_allowed_VIF_devices")
def get_allowed_vif_devices(call: Call, vm: str) -> list[str]:
    store = call.store
    rec = store.get("VM", vm)
    used = {store.get("VIF", v)["device"] for v in rec["VIFs"]}
    return [str(i) for i in range(7) if str(i) not in used]


@api("VM", "get_boot_record")
def get_boot_record(call: Call, vm: str) -> dict:
    from ..datamodel import classes
    from ..generic import public_record
    return public_record(classes()["VM"], call.store.get("VM", vm))


@api("VM", "assert_can_boot_here")
def assert_can_boot_here(call: Call, vm: str, host: str) -> str:
    with call.store.lock:
        call.store.get("host", host)
        check_host_for(call, vm, host)
    return ""


@api("VM", "get_possible_hosts")
def get_possible_hosts(call: Call, vm: str) -> list[str]:
    out = []
    with call.store.lock:
        for h in call.store.all("host"):
            try:
                check_host_for(call, vm, h)
                out.append(h)
            except XapiError:
                pass
    return out


@api("VM", "compute_memory_overhead")
def compute_memory_overhead(call: Call, vm: str) -> int:
    return overhead(call.store.get("VM", vm))


@api("VM", "assert_operation_valid")
def assert_operation_valid(call: Call, vm: str, op: str) -> str:
    """The error the operation would fail with now, if any (xapi_vm_lifecycle.ml)."""
    with call.store.lock:
        check_vm(call.store, vm, op)
    return ""


@api("VM", "update_allowed_operations")
def update_allowed_operations(call: Call, vm: str) -> str:
    call.store.get("VM", vm)
    call.backend.refresh("VM", vm)
    return ""


@api("VM", "get_cooperative")
def get_cooperative(call: Call, vm: str) -> bool:
    """Deprecated in xapi, which now always answers true."""
    call.store.get("VM", vm)
    return True


@api("VM", "set_actions_after_crash")
def set_actions_after_crash(call: Call, vm: str, value: str) -> str:
    call.store.get("VM", vm)
    call.store.set("VM", vm, actions_after_crash=value)
    return ""


@api("VM", "set_suspend_VDI")
def set_suspend_VDI(call: Call, vm: str, value: str) -> str:
    """Only a suspended VM's image can be replaced (xapi_vm.ml set_suspend_VDI)."""
    store = call.store
    with store.lock:
        rec = store.get("VM", vm)
        if rec["power_state"] != "Suspended":
            raise bad_power_state(vm, "Suspended", rec["power_state"])
        store.get("VDI", value)
        store.set("VM", vm, suspend_VDI=value)
    return ""


@api("VM", "send_trigger")
def send_trigger(call: Call, vm: str, trigger: str) -> str:
    """The VM must be running (message_forwarding.ml's operation check), and then xapi has
    nothing to send it with: xapi_vm.ml answers NOT_IMPLEMENTED (dom0's ``xl trigger``
    does it)."""
    with call.store.lock:
        check_vm(call.store, vm, "send_trigger")
    raise XapiError("NOT_IMPLEMENTED", "send_trigger")


@api("VM", "send_sysrq")
def send_sysrq(call: Call, vm: str, key: str) -> str:
    """As ``send_trigger``: NOT_IMPLEMENTED once the VM is running (xapi_vm.ml)."""
    with call.store.lock:
        check_vm(call.store, vm, "send_sysrq")
    raise XapiError("NOT_IMPLEMENTED", "send_sysrq")
