"""pool.join and pool.eject: hosts moving between pools.

From xapi_pool.ml.  ``pool.join`` is called on the joining host, which must
be the master of a pool of its own.  It logs in to the remote master (so a
wrong password is ``SESSION_AUTHENTICATION_FAILED`` and a member's address
``HOST_IS_SLAVE``), runs the pre-join checks in xapi's order
(``assert_not_joining_myself``, ``..._i_know_of_no_other_hosts``,
``..._no_running_vms_on_me``, ``..._no_vms_with_current_ops``,
``..._no_shared_srs_on_me``), then copies its non-VM metadata to the master
as ``update_non_vm_metadata`` does: the host (same uuid), its dom0, CPUs,
PIFs (on the master's network with the same bridge), local SRs with their
PBDs and VDIs (the disk files stay where they are).  Its other VMs are not
copied: like a real joining host's database, they are gone.  The host then
answers as a pool member.

``pool.eject`` refuses the master (xapi raises its internal
``Cannot_eject_master``, which reaches clients as INTERNAL_ERROR) and a host
with VMs that are not halted (``OPERATION_NOT_ALLOWED ["VM resident on
host"]``).  The host's records leave the pool, SRs only it could see are
forgotten with their VDIs and disk files, and the host comes back as a
freshly installed pool of its own (keeping its uuid), as after the reboot a
real eject ends with.  Not modelled: licensing, certificates, HA, clustering,
bonds/VLANs/tunnels, API version checks.
"""
from __future__ import annotations

import shutil

from ..call import Call
from ..datamodel import NULL_REF, RELATIONS
from ..errors import XapiError
from ..registry import api


def _pre_join_checks(call: Call, remote, remote_master: str) -> None:
    store = call.store
    me = call.host
    if remote.store.get("host", remote_master)["uuid"] == store.get("host", me)["uuid"]:
        raise XapiError("OPERATION_NOT_ALLOWED",
                        "Host is already part of a pool" if len(store.all("host")) > 1
                        else "Host cannot become slave of itself")
    if len(store.all("host")) > 1:
        raise XapiError("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    vms = [store.get("VM", v) for v in store.all("VM")]
    if any(not r["is_control_domain"] and r["power_state"] == "Running" for r in vms):
        raise XapiError("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS")
    if any(r["current_operations"] for r in vms):
        raise XapiError("JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS")
    for sr in store.all("SR"):
        rec = store.get("SR", sr)
        if rec["shared"] and not rec["other_config"].get("xenserver_tools_sr"):
            raise XapiError("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS")


# set-valued fields a store derives from the other side of a relation (it rebuilds them)
_DERIVED: dict[str, set[str]] = {}
for _cls, _field, _other, _other_field in RELATIONS:
    _DERIVED.setdefault(_other, set()).add(_other_field)
_FRESH = {"allowed_operations": [], "current_operations": {}}


def _copy(src, dst, cls: str, ref: str, **changes) -> str:
    """Create ``cls`` ``ref`` of pool ``src`` in pool ``dst`` (same uuid, new ref)."""
    derived = _DERIVED.get(cls, set())
    rec = {k: v for k, v in src.store.get(cls, ref).items() if k not in derived}
    rec.update({k: v for k, v in _FRESH.items() if k in rec})
    for k, v in list(rec.items()):
        if isinstance(v, str) and v.startswith("OpaqueRef:") and k not in changes:
            rec[k] = NULL_REF  # a reference into the old pool means nothing in the new one
    rec.update(changes)
    return dst.store.create(cls, rec)


def _move_host(call: Call, remote) -> str:
    """Copy this host's non-VM metadata into ``remote``'s store; return its new ref there."""
    src, me = call.backend, call.host
    s, d = src.store, remote.store
    h = s.get("host", me)
    metrics = _copy(src, remote, "host_metrics", h["metrics"])
    new_host = _copy(src, remote, "host", me, metrics=metrics, control_domain=NULL_REF)
    for cpu in h["host_CPUs"]:
        _copy(src, remote, "host_cpu", cpu, host=new_host)
    dom0 = h["control_domain"]
    if dom0 != NULL_REF:
        vm_metrics = _copy(src, remote, "VM_metrics", s.get("VM", dom0)["metrics"])
        new_dom0 = _copy(src, remote, "VM", dom0, resident_on=new_host, affinity=new_host,
                         metrics=vm_metrics, guest_metrics=NULL_REF)
        d.set("host", new_host, control_domain=new_dom0)
    networks = {d.get("network", n)["bridge"]: n for n in d.all("network")}
    for pif in h["PIFs"]:
        bridge = s.get("network", s.get("PIF", pif)["network"])["bridge"]
        net = networks.get(bridge) or _copy(src, remote, "network", s.get("PIF", pif)["network"])
        _copy(src, remote, "PIF", pif, host=new_host, network=net)
    tools = [r for r in d.all("SR") if d.get("SR", r)["other_config"].get("xenserver_tools_sr")]
    for pbd in h["PBDs"]:
        sr = s.get("PBD", pbd)["SR"]
        srec = s.get("SR", sr)
        if srec["other_config"].get("xenserver_tools_sr") and tools:
            _copy(src, remote, "PBD", pbd, host=new_host, SR=tools[0])
            continue
        new_sr = _copy(src, remote, "SR", sr)
        _copy(src, remote, "PBD", pbd, host=new_host, SR=new_sr)
        for vdi in srec["VDIs"]:
            _copy(src, remote, "VDI", vdi, SR=new_sr)
    return new_host


@api("pool", "join")
def join(call: Call, master_address: str, master_username: str, master_password: str) -> str:
    world = call.backend.world
    found = world.host_at(master_address) if world else None
    if found is None or master_address in call.backend.faults.killed_hosts:
        raise XapiError("JOINING_HOST_CONNECTION_FAILED")
    remote, remote_host = found
    session = remote.login(remote_host, master_username, master_password, "pool.join")
    try:
        src = call.backend
        with src.store.lock, remote.store.lock:
            _pre_join_checks(call, remote, remote.master_ref)
            address = src.store.get("host", call.host)["address"]
            runtime = src.hosts[call.host]
            new_host = _move_host(call, remote)
            runtime.ref = new_host
            remote.hosts[new_host] = runtime
            for sr in remote.store.get("host", new_host)["PBDs"]:
                srec = remote.store.get("SR", remote.store.get("PBD", sr)["SR"])
                remote.disks.attach_sr(new_host, srec["uuid"], srec["type"])
        world.remove_pool(src)
        world.rehome(address, remote, new_host)
    finally:
        remote.logout(session)
    return ""


def _forget_host_storage(backend, host: str) -> None:
    store = backend.store
    for pbd in list(store.get("host", host)["PBDs"]):
        sr = store.get("PBD", pbd)["SR"]
        store.destroy("PBD", pbd)
        srec = store.get("SR", sr)
        if srec["PBDs"]:
            continue  # other hosts still see it
        for vdi in list(srec["VDIs"]):
            for vbd in list(store.get("VDI", vdi)["VBDs"]):
                store.destroy("VBD", vbd)
            store.destroy("VDI", vdi)
        store.destroy("SR", sr)
        shutil.rmtree(backend.state_dir / "srs" / srec["uuid"], ignore_errors=True)


@api("pool", "eject")
def eject(call: Call, host: str) -> str:
    backend = call.backend
    store = backend.store
    world = backend.world
    with store.lock:
        rec = store.get("host", host)
        if host == backend.master_ref:
            raise XapiError("INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master")
        for vm in rec["resident_VMs"]:
            v = store.get("VM", vm)
            if not v["is_control_domain"] and v["power_state"] != "Halted":
                raise XapiError("OPERATION_NOT_ALLOWED", "VM resident on host")
        _forget_host_storage(backend, host)
        for cpu in list(rec["host_CPUs"]):
            store.destroy("host_cpu", cpu)
        for pif in list(rec["PIFs"]):
            store.destroy("PIF", pif)
        dom0 = rec["control_domain"]
        for vm in list(rec["resident_VMs"]):
            store.destroy("VM", vm)
        if dom0 != NULL_REF and store.exists("VM", dom0):
            store.destroy("VM", dom0)
        if store.exists("host_metrics", rec["metrics"]):
            store.destroy("host_metrics", rec["metrics"])
        store.destroy("host", host)
        runtime = backend.hosts.pop(host)
    if world is not None:
        fresh = world.add_pool([runtime.config], {runtime.config.address: rec["uuid"]})
        world.rehome(runtime.config.address, fresh, fresh.master_ref)
    return ""
