"""xapisim's live migration: a shared NFS SR, pool_migrate and migrate_send while the VM runs.

Rules from ``ocaml/xapi/xapi_vm_migrate.ml``: a live migration keeps the VM
Running, reports task progress, can be cancelled with ``task.cancel`` (the VM
stays where it was, nothing half-made remains), and a disk on an SR the
destination cannot see needs storage motion (``VM_REQUIRES_SR``).  How long
the memory copy takes is the simulator's (``migration_mib_per_s``); each
migration's downtime is recorded in ``Simulator.migrations``.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.request

import pytest
import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm
from xapisim import HostConfig, SimConfig, Simulator, host_configs

PW = "live-pw"
MIB = 1 << 20


@pytest.fixture
def pool(tmp_path):
    config = SimConfig(password=PW, hosts=host_configs(2, 16384, 8), shared_sr="nfs",
                       sr_size_gib=20, migration_mib_per_s=512, auth_failure_delay=0.01,
                       other_pools=[[HostConfig("127.0.0.5", "xs-other", 16384, 8)]])
    with Simulator(config, tmp_path / "state") as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PW, "2.21", "live")
        yield sim, s
        s.xenapi.session.logout()


def _shared_sr(x):
    return x.pool.get_default_SR(x.pool.get_all()[0])


def _running_vm(sim, s, sr, host, mem=256 * MIB):
    x = s.xenapi
    vm = diskless_vm(x, "live", mem)
    vdi = x.VDI.create({"name_label": "root", "SR": sr, "virtual_size": str(8 * MIB),
                        "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "unpluggable": False, "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    data = os.urandom(3 * MIB)
    req = urllib.request.Request(f"{sim.url}/import_raw_vdi?session_id={s._session}&vdi={vdi}",
                                 data=data, method="PUT")
    urllib.request.urlopen(req).read()
    time.sleep(0.1)
    x.VM.start_on(vm, host, False, False)
    return vm, vdi, data


def _raw(sim, s, vdi) -> bytes:
    return urllib.request.urlopen(f"{sim.url}/export_raw_vdi?session_id={s._session}"
                                  f"&vdi={vdi}").read()


def _hosts(x):
    master = x.pool.get_master(x.pool.get_all()[0])
    return master, [h for h in x.host.get_all() if h != master][0]


def test_the_shared_sr_is_the_pools_default_and_every_host_sees_it(pool):
    sim, s = pool
    x = s.xenapi
    rec = x.SR.get_record(_shared_sr(x))
    assert rec["type"] == "nfs" and rec["shared"] is True and rec["content_type"] == "user"
    assert sorted(x.PBD.get_host(p) for p in rec["PBDs"]) == sorted(x.host.get_all())
    for p in rec["PBDs"]:
        assert x.PBD.get_currently_attached(p) is True
        assert set(x.PBD.get_device_config(p)) == {"server", "serverpath"}
    for h in x.host.get_all():
        assert (sim.dom0_of(x.host.get_address(h)) / "var/run/sr-mount" / rec["uuid"]).is_dir()
    # each host keeps its own Local storage too
    assert len([r for r in x.SR.get_all_records().values() if r["name_label"] == "Local storage"]) == 2


def test_pool_migrate_keeps_the_vm_running_and_its_disks_in_place(pool):
    sim, s = pool
    x = s.xenapi
    src, dst = _hosts(x)
    vm, vdi, data = _running_vm(sim, s, _shared_sr(x), src)
    seen = []
    watch = XenAPI.Session(sim.url)
    watch.xenapi.login_with_password("root", PW, "2.21", "watch")
    tok = watch.xenapi.event_from([f"VM/{vm}"], "", 0.0)["token"]
    stop = threading.Event()

    def collect():
        nonlocal tok
        while not stop.is_set():
            got = watch.xenapi.event_from([f"VM/{vm}"], tok, 0.2)
            tok = got["token"]
            seen.extend(e["snapshot"]["power_state"] for e in got["events"] if "snapshot" in e)
    t = threading.Thread(target=collect)
    t.start()
    task = x.Async.VM.pool_migrate(vm, dst, {})
    progress = []
    while x.task.get_status(task) == "pending":
        progress.append(float(x.task.get_progress(task)))
        time.sleep(0.02)
    stop.set()
    t.join()
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    # moved forward in steps (the last read may see 1.0 a moment before the status changes)
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress), progress
    assert set(seen) == {"Running"}  # never seen halted or paused
    assert x.VM.get_resident_on(vm) == dst and x.VM.get_power_state(vm) == "Running"
    assert x.VBD.get_VDI(x.VM.get_VBDs(vm)[0]) == vdi  # the same disk, not a copy
    assert _raw(sim, s, vdi)[:len(data)] == data
    (record,) = sim.migrations
    assert record["kind"] == "pool_migrate" and record["source"] == src
    assert record["destination"] == dst and record["disks_copied"] == 0
    assert 0 <= record["downtime_s"] < record["duration_s"]
    assert record["duration_s"] >= 0.4  # 256 MiB at 512 MiB/s
    over_http = json.loads(urllib.request.urlopen(f"{sim.url}/_xapisim/migrations").read())
    assert over_http == sim.migrations
    watch.xenapi.session.logout()


def test_a_cancelled_pool_migrate_leaves_the_vm_where_it_was(pool):
    sim, s = pool
    x = s.xenapi
    src, dst = _hosts(x)
    vm, _, _ = _running_vm(sim, s, _shared_sr(x), src)
    free = int(x.host.compute_free_memory(dst))
    task = x.Async.VM.pool_migrate(vm, dst, {})
    while float(x.task.get_progress(task)) == 0.0:
        time.sleep(0.01)
    assert int(x.host.compute_free_memory(dst)) < free  # held for the copy
    x.task.cancel(task)
    while x.task.get_status(task) in ("pending", "cancelling"):
        time.sleep(0.01)
    assert x.task.get_status(task) == "cancelled"
    assert x.VM.get_resident_on(vm) == src and x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_scheduled_to_be_resident_on(vm) == "OpaqueRef:NULL"
    assert int(x.host.compute_free_memory(dst)) == free
    assert x.VM.get_current_operations(vm) == {} and sim.migrations == []


def test_a_local_disk_needs_storage_motion(pool):
    sim, s = pool
    x = s.xenapi
    src, dst = _hosts(x)
    local = [r for r, v in x.SR.get_all_records().items() if v["name_label"] == "Local storage"
             and x.PBD.get_host(v["PBDs"][0]) == src][0]
    vm, _, _ = _running_vm(sim, s, local, src)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(vm, dst, {})
    assert e.value.details[0] == "VM_REQUIRES_SR"


def _other_pool(sim):
    o = XenAPI.Session(sim.pool_url(1))
    o.xenapi.login_with_password("root", PW, "2.21", "live-dest")
    host = o.xenapi.host.get_all()[0]
    sr = o.xenapi.pool.get_default_SR(o.xenapi.pool.get_all()[0])
    net = [n for n in o.xenapi.network.get_all() if o.xenapi.network.get_bridge(n) == "xenbr0"][0]
    return o, host, sr, net


def test_migrate_send_to_another_pool_runs_there_with_the_same_bytes(pool):
    sim, s = pool
    x = s.xenapi
    src, _ = _hosts(x)
    vm, vdi, data = _running_vm(sim, s, _shared_sr(x), src)
    o, host, dsr, net = _other_pool(sim)
    dest = o.xenapi.host.migrate_receive(host, net, {})
    new = x.VM.migrate_send(vm, dest, True, {vdi: dsr}, {}, {}, {})
    assert o.xenapi.VM.get_power_state(new) == "Running"
    assert o.xenapi.VM.get_resident_on(new) == host
    new_vdi = o.xenapi.VBD.get_VDI(o.xenapi.VM.get_VBDs(new)[0])
    got = urllib.request.urlopen(f"{sim.pool_url(1)}/export_raw_vdi?session_id={o._session}"
                                 f"&vdi={new_vdi}").read()
    assert got[:len(data)] == data
    assert x.VM.get_all_records_where(f'field "uuid" = "{o.xenapi.VM.get_uuid(new)}"') == {}
    (record,) = sim.migrations
    assert record["kind"] == "migrate_send" and record["disks_copied"] == 1
    assert 0 <= record["downtime_s"] < record["duration_s"]
    # the moved VM is an ordinary VM of its new pool: it can be taken apart
    o.xenapi.VM.hard_shutdown(new)
    for vbd in o.xenapi.VM.get_VBDs(new):
        o.xenapi.VBD.destroy(vbd)
    o.xenapi.VDI.destroy(new_vdi)
    o.xenapi.VM.destroy(new)


def test_a_cancelled_migrate_send_leaves_nothing_on_the_destination(pool):
    sim, s = pool
    x = s.xenapi
    src, _ = _hosts(x)
    vm, vdi, _ = _running_vm(sim, s, _shared_sr(x), src)
    o, host, dsr, net = _other_pool(sim)
    vdis_before = set(o.xenapi.VDI.get_all())
    dest = o.xenapi.host.migrate_receive(host, net, {})
    task = x.Async.VM.migrate_send(vm, dest, True, {vdi: dsr}, {}, {}, {})
    while float(x.task.get_progress(task)) < 0.7:  # the disk is copied; memory is moving
        time.sleep(0.01)
    x.task.cancel(task)
    while x.task.get_status(task) in ("pending", "cancelling"):
        time.sleep(0.01)
    assert x.task.get_status(task) == "cancelled"
    assert x.VM.get_power_state(vm) == "Running" and x.VM.get_resident_on(vm) == src
    assert set(o.xenapi.VDI.get_all()) == vdis_before
    assert [v for v in o.xenapi.VM.get_all_records().values()
            if not v["is_a_template"] and not v["is_control_domain"]] == []


def test_power_state_reset_only_after_the_host_failed(pool):
    """xapi_vm.ml power_state_reset: dom0 never; DOMAIN_EXISTS on the master; HOST_IS_LIVE."""
    sim, s = pool
    x = s.xenapi
    master, member = _hosts(x)
    dom0 = x.host.get_control_domain(master)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.power_state_reset(dom0)
    assert e.value.details == ["CANNOT_RESET_CONTROL_DOMAIN", dom0]
    here, _, _ = _running_vm(sim, s, _shared_sr(x), master)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.power_state_reset(here)
    assert e.value.details == ["DOMAIN_EXISTS", here]
    there, _, _ = _running_vm(sim, s, _shared_sr(x), member)
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.power_state_reset(there)
    assert e.value.details == ["HOST_IS_LIVE", member]
    sim.crash_host(x.host.get_address(member))
    assert x.VM.get_power_state(there) == "Running"  # the database still says so
    x.VM.power_state_reset(there)
    assert x.VM.get_power_state(there) == "Halted" and x.VM.get_resident_on(there) == "OpaqueRef:NULL"
    x.VM.start_on(there, master, False, False)  # its shared disk lets it run elsewhere


def test_a_vm_with_a_pci_device_or_a_local_cd_cannot_move(pool):
    """xapi_vm_lifecycle.ml: VM_HAS_PCI_ATTACHED for pool_migrate/migrate_send/suspend; a CD
    in a host's own ISO SR is a disk on storage the destination cannot see (VM_REQUIRES_SR)."""
    sim, s = pool
    x = s.xenapi
    src, dst = _hosts(x)
    vm, _, _ = _running_vm(sim, s, _shared_sr(x), src)
    store = sim.backend.store
    with store.lock:
        store.get("VM", vm)["attached_PCIs"].append("OpaqueRef:some-pci")
    for call in (lambda: x.VM.pool_migrate(vm, dst, {}), lambda: x.VM.suspend(vm)):
        with pytest.raises(XenAPI.Failure) as e:
            call()
        assert e.value.details == ["VM_HAS_PCI_ATTACHED", vm]
    with store.lock:
        store.get("VM", vm)["attached_PCIs"].clear()
    dvd = [r for r, v in x.SR.get_all_records().items() if v["name_label"] == "DVD drives"
           and x.PBD.get_host(v["PBDs"][0]) == src][0]
    with store.lock:  # the disc in the host's drive, as udev's SR shows it
        disc = store.create("VDI", {"name_label": "disc", "SR": dvd, "virtual_size": 0,
                                    "type": "user", "location": "/dev/xapi/cd/sr0"})
    x.VBD.create({"VM": vm, "VDI": disc, "userdevice": "3", "bootable": False, "mode": "RO",
                  "type": "CD", "unpluggable": True, "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.pool_migrate(vm, dst, {})
    assert e.value.details[0] == "VM_REQUIRES_SR" and e.value.details[2] == dvd
