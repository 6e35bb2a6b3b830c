"""Moving VMs: inside a pool (VM.pool_migrate, host.evacuate) and between pools.

Checks follow xapi_vm_migrate.ml and xapi_host.ml as far as a simulator can
show them.  ``VM.pool_migrate``: the VM must be Running (``VM_BAD_POWER_STATE``
through the lifecycle rules), the destination enabled (``HOST_DISABLED``),
every disk on an SR the destination can see (``VM_REQUIRES_SR``: local SRs
block a live migration without storage motion), and enough free memory
(``HOST_NOT_ENOUGH_FREE_MEMORY``); migrating to the VM's own host is allowed,
as xapi allows localhost migration.  ``host.evacuate`` plans a destination
for every running guest first and moves nothing unless all can go
(``CANNOT_EVACUATE_HOST``).

Both are live: the memory copy takes ``SimConfig.migration_mib_per_s``
time with task progress, ``task.cancel`` during it leaves the VM where it
was and nothing half-made on either side, and the switch-over (with
``SimConfig.migration_pause_s``) is recorded with its downtime in
``Simulator.migrations``.

Storage motion and cross-pool migration: the destination pool's
``host.migrate_receive`` returns the ``dest`` map (keys ``SM``, ``host``,
``xenops``, ``session_id``, ``master``) that ``VM.migrate_send`` and
``VM.assert_can_migrate`` take.  Every disk must be in ``vdi_map``
(``VDI_NOT_IN_MAP``); inside a pool ``vif_map`` must be empty
(``OPERATION_NOT_ALLOWED``), across pools every VIF must be mapped or share a
MAC with a mapped one (``VIF_NOT_IN_MAP``).  The disks' bytes are copied to
the mapped SRs, the VM is created in the destination pool (running there if
it ran here) and removed from the source with its old disks; the new VM's
ref is the result.

``assert_can_migrate`` (run first by ``migrate_send`` too) follows xapi's
order: every disk mapped; for each VDI that changes SR, its SR must offer
VDI_SNAPSHOT and VDI_MIRROR and the target SR VDI_SNAPSHOT and
VDI_MIRROR_IN (``SR_DOES_NOT_SUPPORT_MIGRATION``: an ``iscsi`` LUN SR has
neither); across pools, ``options:copy=true`` needs a halted VM unless
``force=true`` (``VM_BAD_POWER_STATE``; a copy leaves the source VM and its
disks in place), the destination must be enabled and have at least as many
pCPUs as the VM has vCPUs unless ``platform:vcpu-unrestricted``
(``HOST_NOT_ENOUGH_PCPUS``); last, no VDI that moves may have CBT enabled
(``VDI_CBT_ENABLED``) or be encrypted (``sm_config:key_hash``,
``VDI_IS_ENCRYPTED``).  Not modelled: HA (xapisim pools never enable it),
vGPUs (xapisim hosts have no pGPUs, so a VM cannot have one), platform
version checks (every simulated host runs the same version).
"""
from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

from ..call import Call
from ..datamodel import NULL_REF
from ..errors import XapiError
from ..registry import api
from . import vtpm as vtpms
from .lifecycle import Operation, check_vm
from .vdi import new_vdi, sr_info, update_sr_usage
from .vm import bring_down, bring_up, check_host_for, update_host_memory

MIB = 1 << 20
COPY_STEPS = 10


def _copy_memory(call: Call, vm: str, base: float, span: float) -> None:
    """The pre-copy of a live migration: the VM keeps running while its memory moves.

    It takes ``memory_dynamic_max / SimConfig.migration_mib_per_s`` seconds
    (none when that is 0), reports progress from ``base`` to ``base + span``
    and stops with TASK_CANCELLED when the task is cancelled.
    """
    rate = call.backend.config.migration_mib_per_s
    with call.store.lock:
        mib = int(call.store.get("VM", vm)["memory_dynamic_max"]) / MIB
    seconds = mib / rate if rate > 0 else 0.0
    for i in range(1, COPY_STEPS + 1):
        if seconds:
            time.sleep(seconds / COPY_STEPS)
        call.progress(base + span * i / COPY_STEPS)


@contextlib.contextmanager
def _locked(*stores):
    """Hold several pools' locks, always taken in the same order (no deadlock between
    two migrations going opposite ways)."""
    with contextlib.ExitStack() as stack:
        for st in sorted(set(stores), key=id):
            stack.enter_context(st.lock)
        yield


def _record(call: Call, kind: str, vm_uuid: str, source: str, destination: str, started: float,
            downtime: float, disks: int) -> None:
    """What tests read back to measure a migration (``Simulator.migrations``)."""
    call.backend.migrations.append({
        "kind": kind, "vm": vm_uuid, "source": source, "destination": destination,
        "duration_s": time.monotonic() - started, "downtime_s": downtime, "disks_copied": disks})


def _switch_over(call: Call, vm: str, host: str) -> float:
    """Pause, move the domain and resume on ``host``; the seconds the guest did not run.

    Called with the store locked, so no observer sees the VM anywhere but
    Running on one host or the other.
    """
    t = time.monotonic()
    pause = call.backend.config.migration_pause_s
    if pause:
        time.sleep(pause)
    _move(call, vm, host)
    return time.monotonic() - t


def _move(call: Call, vm: str, host: str) -> None:
    store = call.store
    rec = store.get("VM", vm)
    paused = rec["power_state"] == "Paused"
    source = rec["resident_on"]
    bring_down(call, vm, power_state=rec["power_state"])
    bring_up(call, vm, host, paused)
    update_host_memory(call.backend, source)


def _check_destination(call: Call, vm: str, host: str) -> None:
    store = call.store
    if store.get("VM", vm)["resident_on"] == host:
        return  # localhost migration: the VM's memory is already counted there
    check_host_for(call, vm, host)


@api("VM", "pool_migrate", cancellable=True)
def pool_migrate(call: Call, vm: str, host: str, options: dict) -> str:
    """Live migration inside the pool: memory is copied while the VM runs; disks stay put.

    The destination's memory is held (``scheduled_to_be_resident_on``) for the
    copy; a cancel during it leaves the VM running where it was.
    """
    store = call.store
    store.get("host", host)
    started = time.monotonic()
    with Operation(call, "VM", vm, "pool_migrate"):
        with store.lock:
            _check_destination(call, vm, host)
            source = store.get("VM", vm)["resident_on"]
            store.set("VM", vm, scheduled_to_be_resident_on=host)
            update_host_memory(call.backend, host)
        try:
            _copy_memory(call, vm, 0.0, 0.95)
        except BaseException:
            with store.lock:
                if store.exists("VM", vm):
                    store.set("VM", vm, scheduled_to_be_resident_on=NULL_REF)
                update_host_memory(call.backend, host)
            raise
        with store.lock:
            downtime = _switch_over(call, vm, host)
            uuid = store.get("VM", vm)["uuid"]
    _record(call, "pool_migrate", uuid, source, host, started, downtime, 0)
    return ""


def _guests(call: Call, host: str) -> list[str]:
    store = call.store
    return [vm for vm in store.get("host", host)["resident_VMs"]
            if not store.get("VM", vm)["is_control_domain"]]


@api("host", "evacuate", cancellable=True)
def evacuate(call: Call, host: str, network: str, evacuate_batch_size: int) -> str:
    store = call.store
    with store.lock:
        store.get("host", host)
        others = [h for h in store.all("host") if h != host]
        plan: dict[str, str] = {}
        errors: list[str] = []
        for vm in _guests(call, host):
            for target in others:
                try:
                    check_host_for(call, vm, target)
                    plan[vm] = target
                    break
                except XapiError:
                    continue
            else:
                errors.append(store.get("VM", vm)["uuid"])
        if errors:
            raise XapiError("CANNOT_EVACUATE_HOST",
                            f"no other host can take VM(s) {', '.join(errors)}")
    for n, (vm, target) in enumerate(plan.items(), 1):
        pool_migrate(call, vm, target, {})
        call.progress(n / len(plan))
    return ""


@api("host", "migrate_receive")
def migrate_receive(call: Call, host: str, network: str, options: dict) -> dict:
    store = call.store
    backend = call.backend
    store.get("host", host)
    store.get("network", network)
    session = backend.internal_session(host, "migrate_receive")
    ip = store.get("host", host)["address"]
    return {"SM": f"http://{ip}/services/SM?session_id={session}", "host": host,
            "xenops": f"http://{ip}/services/xenops?session_id={session}",
            "session_id": session, "master": f"http://{backend.master_address()}"}


def _destination(call: Call, dest: dict):
    """(backend, host ref, session) of a migrate_receive map."""
    try:
        master, host, session = dest["master"], dest["host"], dest["session_id"]
    except KeyError as e:
        raise XapiError("INTERNAL_ERROR", f"Not_found: dest key {e.args[0]}") from None
    address = urlsplit(master).hostname or ""
    world = call.backend.world
    found = world.host_at(address) if world else None
    if found is None or address in call.backend.faults.killed_hosts:
        raise XapiError("CANNOT_CONTACT_HOST", address)
    remote = found[0]
    if not remote.session_valid(session):
        raise XapiError("SESSION_INVALID", session)
    remote.store.get("host", host)
    return remote, host, session


def _disks(store, vm: str) -> list[tuple[str, str]]:
    out = []
    for vbd in store.get("VM", vm)["VBDs"]:
        v = store.get("VBD", vbd)
        if v["type"] != "CD" and not v["empty"] and v["VDI"] != NULL_REF:
            out.append((vbd, v["VDI"]))
    return out


def _flag(options: dict, key: str) -> bool:
    """OCaml's ``bool_of_string`` as xapi applies it to the options map: anything but
    ``true`` is false."""
    return str((options or {}).get(key, "")) == "true"


SOURCE_SR_FEATURES = ("VDI_SNAPSHOT", "VDI_MIRROR")
TARGET_SR_FEATURES = ("VDI_SNAPSHOT", "VDI_MIRROR_IN")


def _sr_features(store, sr: str) -> set[str]:
    """The SM features of an SR's driver, from the operations its type offers (file-based
    and LVM drivers mirror both ways; a LUN-per-VDI driver does neither)."""
    from ..inventory import sr_operations
    rec = store.get("SR", sr)
    ops = {op.upper() for op in sr_operations(rec["type"], rec["content_type"])}
    return ops | ({"VDI_MIRROR_IN"} if "VDI_MIRROR" in ops else set())


def _assert_sr_support(call: Call, remote, moving: dict) -> None:
    """xapi_vm_migrate.ml assert_sr_support_operations, for the VDIs that change SR."""
    store = call.store
    for vdi, target in moving.items():
        for st, sr, wanted in ((store, store.get("VDI", vdi)["SR"], SOURCE_SR_FEATURES),
                               (remote.store, target, TARGET_SR_FEATURES)):
            missing = [f for f in wanted if f not in _sr_features(st, sr)]
            if missing:
                raise XapiError("SR_DOES_NOT_SUPPORT_MIGRATION", sr, ";".join(missing))


def _assert_can_migrate_vdis(store, moving: dict) -> None:
    """xapi_vm_migrate.ml assert_can_migrate_vdis: no CBT, no encryption on what moves."""
    for vdi in moving:
        rec = store.get("VDI", vdi)
        if rec["cbt_enabled"]:
            raise XapiError("VDI_CBT_ENABLED", vdi)
        if "key_hash" in rec["sm_config"]:
            raise XapiError("VDI_IS_ENCRYPTED", vdi)


def _assert_enough_pcpus(remote, rec: dict, host: str) -> None:
    vcpus = int(rec["VCPUs_max"])
    pcpus = int(remote.store.get("host", host)["cpu_info"].get("cpu_count", "0"))
    if vcpus > pcpus and rec["platform"].get("vcpu-unrestricted") != "true":
        raise XapiError("HOST_NOT_ENOUGH_PCPUS", str(vcpus), str(pcpus))


def _assert_can_migrate(call: Call, vm: str, dest: dict, vdi_map: dict, vif_map: dict,
                        options: dict | None = None):
    store = call.store
    remote, host, session = _destination(call, dest)
    check_vm(store, vm, "migrate_send")
    for _, vdi in _disks(store, vm):
        if vdi not in vdi_map:
            raise XapiError("VDI_NOT_IN_MAP", vdi)
    for sr in vdi_map.values():
        remote.store.get("SR", sr)
    rec = store.get("VM", vm)
    moving = {vdi: sr for vdi, sr in vdi_map.items()
              if not (remote is call.backend and store.get("VDI", vdi)["SR"] == sr)}
    _assert_sr_support(call, remote, moving)
    if remote is call.backend:
        if vif_map:
            raise XapiError("OPERATION_NOT_ALLOWED", "VIF mapping is not allowed for intra-pool "
                            "migration -all VIFs must be on the same network")
        if rec["power_state"] == "Running" and rec["resident_on"] != host:
            _check_destination_memory(call, remote, vm, host)
        _assert_can_migrate_vdis(store, moving)
        return remote, host, session
    if _flag(options, "copy") and not _flag(options, "force") and rec["power_state"] != "Halted":
        raise XapiError("VM_BAD_POWER_STATE", vm, "halted", rec["power_state"].lower())
    mapped_macs = {store.get("VIF", v)["MAC"] for v in vif_map}
    for vif in rec["VIFs"]:
        if vif not in vif_map and store.get("VIF", vif)["MAC"] not in mapped_macs:
            raise XapiError("VIF_NOT_IN_MAP", vif)
    for net in vif_map.values():
        remote.store.get("network", net)
    if not remote.store.get("host", host)["enabled"]:
        raise XapiError("HOST_DISABLED", host)
    _assert_enough_pcpus(remote, rec, host)
    if rec["power_state"] == "Running":
        _check_destination_memory(call, remote, vm, host, rec)
    _assert_can_migrate_vdis(store, moving)
    return remote, host, session


def _check_destination_memory(call: Call, remote, vm: str, host: str, rec: dict | None = None) -> None:
    from .vm import host_memory_free, vm_memory_need
    need = vm_memory_need(rec or call.store.get("VM", vm))
    free = host_memory_free(remote, host)
    if need > free:
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


@api("VM", "assert_can_migrate")
def assert_can_migrate(call: Call, vm: str, dest: dict, live: bool, vdi_map: dict, vif_map: dict,
                       options: dict, vgpu_map: dict) -> str:
    with call.store.lock:
        _assert_can_migrate(call, vm, dest, vdi_map, vif_map, options)
    return ""


def _copy_disk(call: Call, dcall: Call, vdi: str, sr: str) -> str:
    """A new VDI in ``sr`` (of ``dcall``'s pool) with ``vdi``'s bytes."""
    src = call.store.get("VDI", vdi)
    extra = {k: src[k] for k in ("name_description", "other_config", "xenstore_data", "sm_config",
                                 "read_only", "sharable", "tags")}
    extra["other_config"] = dict(extra["other_config"])
    new = new_vdi(dcall, sr, src["name_label"], int(src["virtual_size"]), src["type"], extra)
    s_uuid, s_type = sr_info(call.store, src["SR"])
    d_uuid, d_type = sr_info(dcall.store, sr)
    dcall.backend.disks.copy((s_uuid, s_type, src["uuid"]),
                             (d_uuid, d_type, dcall.store.get("VDI", new)["uuid"]),
                             int(src["virtual_size"]))
    dcall.store.set("VDI", new, physical_utilisation=dcall.backend.disks.physical_size(
        d_uuid, d_type, dcall.store.get("VDI", new)["uuid"], int(src["virtual_size"])))
    update_sr_usage(dcall, sr)
    return new


_VM_SKIP = {"uuid", "resident_on", "scheduled_to_be_resident_on", "affinity", "metrics",
            "guest_metrics", "consoles", "VBDs", "VIFs", "VTPMs", "VUSBs", "VGPUs", "crash_dumps",
            "snapshots", "snapshot_of", "parent", "children", "attached_PCIs", "appliance",
            "protection_policy", "snapshot_schedule", "suspend_VDI", "suspend_SR", "domid",
            "allowed_operations", "current_operations", "power_state", "blobs", "groups",
            "pending_guidances", "pending_guidances_recommended", "pending_guidances_full"}


def _recreate_vm(call: Call, dcall: Call, vm: str, disks: dict[str, str], vif_map: dict) -> str:
    src = call.store
    dst = dcall.store
    rec = src.get("VM", vm)
    values = {k: v for k, v in rec.items() if k not in _VM_SKIP}
    values.update(uuid=rec["uuid"], power_state="Halted",
                  metrics=dst.create("VM_metrics", {"memory_actual": 0, "VCPUs_number": 0}))
    new = dst.create("VM", values)
    for vbd in rec["VBDs"]:
        v = src.get("VBD", vbd)
        fields = {k: v[k] for k in ("userdevice", "bootable", "mode", "type", "unpluggable",
                                    "empty", "other_config", "qos_algorithm_type",
                                    "qos_algorithm_params")}
        dst.create("VBD", {**fields, "VM": new, "VDI": disks.get(v["VDI"], NULL_REF),
                           "empty": v["VDI"] not in disks})
    macs = {src.get("VIF", v)["MAC"]: net for v, net in vif_map.items()}
    for vif in rec["VIFs"]:
        v = src.get("VIF", vif)
        net = vif_map.get(vif) or macs[v["MAC"]]
        dst.create("VIF", {k: v[k] for k in ("device", "MAC", "MTU", "other_config", "locking_mode",
                                             "qos_algorithm_type", "qos_algorithm_params")}
                   | {"VM": new, "network": net, "MAC_autogenerated": False})
    for vtpm in rec["VTPMs"]:  # export.ml carries the TPM's contents; import.ml sets them
        vtpms.introduce(dst, new, src.get("VTPM", vtpm)["is_unique"], vtpms.contents(src, vtpm))
    return new


@api("VM", "migrate_send", cancellable=True)
def migrate_send(call: Call, vm: str, dest: dict, live: bool, vdi_map: dict, vif_map: dict,
                 options: dict, vgpu_map: dict) -> str:
    """Storage motion and cross-pool migration: the disks are copied, then (if it runs) the
    memory while the VM keeps running, then the switch-over.  A cancel or a failure before
    the switch-over destroys every copy and leaves the VM where it was."""
    from .vdi import destroy_vdi
    store = call.store
    started = time.monotonic()
    with store.lock:
        remote, host, session = _assert_can_migrate(call, vm, dest, vdi_map, vif_map, options)
    copy = _flag(options, "copy") and remote is not call.backend
    dcall = Call(remote, host, session=session, wire_name="VM.migrate_send")
    with Operation(call, "VM", vm, "migrate_send"):
        rec = store.get("VM", vm)
        running = rec["power_state"] in ("Running", "Paused")
        source = rec["resident_on"]
        old = [vdi for _, vdi in _disks(store, vm)]
        copies: dict[str, str] = {}
        try:
            for n, vdi in enumerate(old, 1):
                copies[vdi] = _copy_disk(call, dcall, vdi, vdi_map[vdi])
                call.progress(0.7 * n / max(1, len(old)))
            if running:
                _copy_memory(call, vm, 0.7, 0.25)
        except BaseException:
            for new in copies.values():
                if remote.store.exists("VDI", new):
                    destroy_vdi(dcall, new)
            raise
        downtime = 0.0
        if remote is call.backend:  # storage motion inside the pool
            with store.lock:
                t = time.monotonic()
                for vbd, vdi in _disks(store, vm):
                    store.set("VBD", vbd, VDI=copies[vdi])
                for vdi in old:
                    destroy_vdi(call, vdi)
                if running and rec["resident_on"] != host:
                    downtime = _switch_over(call, vm, host)
                elif running:
                    downtime = time.monotonic() - t
            _record(call, "migrate_send", rec["uuid"], source, host, started, downtime, len(old))
            return vm
        with _locked(remote.store, store):
            t = time.monotonic()
            new = _recreate_vm(call, dcall, vm, copies, vif_map)
            if running:
                pause = call.backend.config.migration_pause_s
                if pause:
                    time.sleep(pause)
                bring_up(dcall, new, host, rec["power_state"] == "Paused")
            if copy:  # xapi's copy mode: the source VM and its disks stay
                _record(call, "migrate_send", rec["uuid"], source, host, started, 0.0, len(old))
                return new
            if rec["power_state"] != "Halted":
                bring_down(call, vm)
            downtime = time.monotonic() - t if running else 0.0
            for vbd in list(store.get("VM", vm)["VBDs"]):
                store.destroy("VBD", vbd)
            for vif in list(store.get("VM", vm)["VIFs"]):
                store.destroy("VIF", vif)
            for vtpm in list(store.get("VM", vm)["VTPMs"]):
                vtpms.remove(store, vtpm)
            for vdi in old:
                destroy_vdi(call, vdi)
    with store.lock:
        metrics = store.get("VM", vm)["metrics"]
        store.destroy("VM", vm)
        if store.exists("VM_metrics", metrics):
            store.destroy("VM_metrics", metrics)
    _record(call, "migrate_send", rec["uuid"], source, host, started, downtime, len(old))
    return new
