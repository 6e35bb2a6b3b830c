"""XAPI round trips and wall time per driver operation, next to the old in-tree driver's.

Drives ``XenAPIDriver`` directly (no Nova services, no lifecycle thread, so
every call counted is the operation's own) against a fresh xapisim, then
times the power-state sync of 1000 VMs the way Nova's periodic task asks for
it (``get_info`` per instance): from the event.from cache, and from XAPI.

The old driver's counts are read from its source (nova 21.0.0,
``nova/virt/xenapi/``), for one instance with a raw root disk, one VIF (OVS
driver), no volumes, no kernel/ramdisk, no agent; the source lines are listed
with each number.  Where a helper was not traced to the end the number is a
lower bound and marked ``>=``.  Run: ``.venv/bin/python benchmarks/driver_operations.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402

from nova_xenapi import conf as xconf  # noqa: E402
from nova_xenapi import driver as xdriver  # noqa: E402
from nova_xenapi import events, lifecycle, spawn  # noqa: E402
from nova_xenapi.network import XenAPIOpenVswitchDriver  # noqa: E402
from nova_xenapi.storage import images
from xapisim import SimConfig, Simulator, host_configs  # noqa: E402

PASSWORD = "bench"
IMAGE = bytes(range(256)) * 4096 * 4  # 4 MiB

# Old driver, nova 21.0.0 nova/virt/xenapi/*, one disk / one VIF as described above.
OLD_DRIVER = {
    "reboot (soft)": ("3", "vmops.py:1438 lookup(check_rescue) = 2x VM.get_by_name_label "
                      "(vm_utils.py:1642,1645); vmops.py:1444 VM.clean_reboot"),
    "reboot (hard)": ("3", "vmops.py:1438 as above; vmops.py:1442 VM.hard_reboot"),
    "power off": ("3", "vmops.py:1832 power_off: lookup 1; vm_utils.py:288-297 hard_shutdown_vm: "
                  "VM.get_power_state, VM.hard_shutdown"),
    "power on": (">=3", "vmops.py:318-330 _start: lookup 1, VM.start_on 1; then "
                 "_wait_for_instance_to_start polls VM.get_power_state every 0.5 s (vmops.py:924-940)"),
    "snapshot": (">=12", "vmops.py:1010 lookup 1; vm_utils.py:673 get_vdi_for_vm_safely (VM.get_VBDs, "
                 "VBD.get_record, VDI.get_record); :675 _walk_vdi_chain (VDI.get_record per link); "
                 ":680 delete old snapshots (SR scan); :682 VDI.snapshot; :689 _wait_for_vhd_coalesce "
                 "(SR.scan + polls, vhd_coalesce_poll_interval 5 s); :692 VDI.get_uuid; :693 chain walk; "
                 ":697 VDI.destroy; plus the dom0 upload plugin call"),
    "spawn": (">=25", "vmops.py:714 lookup 1; :719 is_enough_free_mem (host record, metrics) >=2; "
              "image fetch VDI.create + HTTP import >=2; :1393 _resize_up_vdis VDI.resize >=1; "
              ":723 create_vm VM.create 1; :755 create_vbd VBD.create 1 (+VBD.plug-free); "
              ":1500 _inject_instance_metadata VM.add_to_xenstore_data per metadata key >=1; "
              ":1513 _inject_auto_disk_config 1; :2048 _create_vifs -> vif.py:137 plug: "
              "VM.get_VIFs, network.create (interim), VIF.create, plugin calls for the bridge >=4; "
              ":318 VM.start_on (paused) 1; :405 _update_last_dom_id 3; :136 VM.unpause 1; "
              ":924 polls VM.get_power_state >=1; :405 again 3"),
    "destroy": (">=19", "vmops.py:1652-1653 lookup x2; vm_utils.py:288-297 VM.get_power_state, "
                "VM.hard_shutdown; volumeops.py:178-180 VM.get_VBDs + VBD.get_other_config per VBD; "
                "vm_utils.py:1617-1627 VM.get_VBDs + (VBD.get_VDI, VDI.get_uuid, "
                "VBD.get_other_config) per VBD; vmops.py:1586 VDI.destroy; vif.py:189-240 per VIF: "
                "network lookup, network.get_VIFs, network.get_bridge, network.destroy, 3 dom0 "
                "plugin calls (ovs_del_port, ovs_del_br, ip_link_get_dev); vm_utils.py:265 VM.destroy"),
}


class InMemoryImages:
    """The two calls of nova.image.glance.API the handler uses, over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def download(self, context, image_id, data=None, dst_path=None, trusted_certs=None):
        data.write(self.data[image_id])

    def update(self, context, image_id, meta, data=None, purge_props=True):
        self.data[image_id] = data.read()


def make_instance(n: int) -> objects.Instance:
    flavor = objects.Flavor(memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0, swap=0,
                            extra_specs={}, name="m1.tiny", flavorid="1")
    return objects.Instance(id=n, uuid=str(uuid.uuid4()), flavor=flavor, hostname=f"bench-{n}",
                            vm_mode=None, os_type=None, auto_disk_config=False, config_drive="",
                            system_metadata={}, metadata={}, key_data=None, user_data=None,
                            project_id="p", user_id="u", image_ref="img")


def measure(drv: xdriver.XenAPIDriver, fn, *args) -> tuple[float, int]:
    calls = drv.session.calls
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t, drv.session.calls - calls


def main() -> int:
    objects.register_all()
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as state, \
            Simulator(SimConfig(password=PASSWORD, hosts=host_configs(1, 262144, 32)), state) as sim:
        conf = xconf.CONF
        conf([], project="nova")
        conf.set_override("connection_url", sim.url, "xenserver")
        conf.set_override("connection_password", PASSWORD, "xenserver")
        drv = xdriver.XenAPIDriver(None)
        store = InMemoryImages()
        store.data["img"] = IMAGE
        drv._host = spawn.Host(session=drv.session, handler=images.RemoteStreamHandler(store),
                               vifs=XenAPIOpenVswitchDriver(drv.session, "br-int"),
                               sr_filter="default-sr:true",
                               default_os_type="linux", running_timeout=60)
        ctx = nova_context.get_admin_context()
        meta = objects.ImageMeta.from_dict({"id": "img", "disk_format": "raw", "size": len(IMAGE),
                                            "properties": {}})
        results: dict[str, list[tuple[float, int]]] = {}

        def record(name, fn, *args):
            results.setdefault(name, []).append(measure(drv, fn, *args))

        for n in range(1, rounds + 1):
            inst = make_instance(n)
            record("spawn", drv.spawn, ctx, inst, meta, [], None, {}, [])
            record("reboot (soft)", drv.reboot, ctx, inst, [], "SOFT")
            record("reboot (hard)", drv.reboot, ctx, inst, [], "HARD")
            record("power off", drv.power_off, inst)
            record("power on", drv.power_on, ctx, inst, [])
            record("snapshot", drv.snapshot, ctx, inst, f"snap-{n}", lambda **kw: None)
            record("destroy", drv.destroy, ctx, inst, [])
        print(f"driver operations, median of {rounds} (xapisim on loopback, 4 MiB raw image, "
              "1 GiB root disk, no VIFs)")
        print(f"{'operation':<16}{'wall ms':>9}{'XAPI calls':>12}{'old driver':>12}   old driver source")
        for name, rows in results.items():
            ms = statistics.median(r[0] for r in rows) * 1000
            calls = statistics.median(r[1] for r in rows)
            old, where = OLD_DRIVER[name]
            print(f"{name:<16}{ms:9.1f}{calls:12.0f}{old:>12}   {where[:90]}")
        print("(our counts include the Async.* task, its event.from waits and task.destroy; "
              "snapshot and spawn also make one HTTP transfer each)")
        sync_benchmark(sim, drv)
    return 0


def sync_benchmark(sim: Simulator, drv: xdriver.XenAPIDriver, count: int = 1000) -> None:
    x = drv.session
    insts = [make_instance(10_000 + i) for i in range(count)]
    t = time.perf_counter()
    for inst in insts:
        x.call_xenapi("VM.create", {
            "name_label": inst.name, "is_a_template": False, "memory_static_min": "0",
            "memory_static_max": str(64 << 20), "memory_dynamic_min": str(64 << 20),
            "memory_dynamic_max": str(64 << 20), "VCPUs_max": "1", "VCPUs_at_startup": "1",
            "VCPUs_params": {}, "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
            "actions_after_crash": "destroy", "affinity": "OpaqueRef:NULL", "user_version": "1",
            "other_config": {"nova_uuid": inst.uuid}, "platform": {}, "recommendations": "",
            "PCI_bus": "", "PV_args": "", "PV_bootloader": "", "PV_bootloader_args": "", "PV_kernel": "",
            "PV_ramdisk": "", "PV_legacy_args": "", "HVM_boot_policy": "BIOS order",
            "HVM_boot_params": {}})
    made = time.perf_counter() - t
    pump = events.EventPump(x)
    watcher = lifecycle.LifecycleWatcher(x, lambda ev: None)
    watcher.follow(pump)
    drv._watcher = watcher
    t = time.perf_counter()
    pump.start()
    watcher.ready.wait(120)
    learned = time.perf_counter() - t
    calls = x.calls
    t = time.perf_counter()
    cached = [drv.get_info(inst).state for inst in insts]
    from_cache = time.perf_counter() - t
    cache_calls = x.calls - calls
    calls = x.calls
    t = time.perf_counter()
    direct = [drv.get_info(inst, use_cache=False).state for inst in insts]
    from_xapi = time.perf_counter() - t
    xapi_calls = x.calls - calls
    pump.stop()
    assert cached == direct
    print()
    print(f"power-state sync of {count} VMs (Nova's periodic get_info per instance); "
          f"{count} VMs created in {made:.1f} s")
    print(f"  event.from cache: first full read {learned * 1000:.0f} ms, then {count} get_info in "
          f"{from_cache * 1000:.1f} ms with {cache_calls} XAPI calls")
    print(f"  straight from XAPI: {count} get_info in {from_xapi * 1000:.0f} ms with {xapi_calls} "
          f"XAPI calls ({from_xapi / max(from_cache, 1e-9):.0f}x slower than the cache)")
    print(f"  old driver: get_info = VM.get_by_name_label + VM.get_power_state per instance "
          f"(vmops.py:1876-1879, vm_utils.py:1645, 1711-1713): {2 * count} XAPI calls")


if __name__ == "__main__":
    sys.exit(main())
