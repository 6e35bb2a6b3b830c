"""What a freshly installed XenServer 8 / XCP-ng 8.3 pool holds before anyone touches it.

Each object is made as the code that makes it on a real host does, and the
sources are named where they are used:

* the pool (``dbsync_master.ml create_pool_record``): ``other_config`` with
  the memory ratios, ``default_SR`` set by SM's ``storage-init`` script,
  ``suspend_image_SR``/``crash_dump_SR`` left NULL (the script sets the
  host's fields instead), ``cpu_info`` summed over the hosts
  (``create_misc.ml create_pool_cpuinfo``);
* per host (``dbsync_slave.ml``, ``create_misc.ml``): ``software_version``,
  ``cpu_info`` and one ``host_cpu`` per CPU, ``bios_strings``
  (``bios_strings.ml``), ``chipset_info``, ``host_metrics``, the
  management PIF on ``xenbr0`` with its PIF_metrics, the control domain with
  its metrics and its two consoles (RFB and VT100), and ``multipathing``;
* the networks: ``Pool-wide network associated with eth0`` and the host
  internal management network (``create_networks.ml``);
* the SRs: ``Local storage``, ``Removable storage`` and ``DVD drives`` as
  ``storage-init`` (``xapi-project/sm``) creates them, with their i18n keys,
  and the pool's one shared tools ISO SR (``dbsync_master.ml
  create_tools_sr``);
* with ``SimConfig.shared_sr``, an NFS SR plugged into every host and made
  the pool's default SR, as an operator sets a pool up for live migration;
* the default templates, generated from ``xenserver/guest-templates-json``
  (``tools/gen_templates.py`` → ``datamodel/templates.json``).

``docs/fresh-install.md`` compares each of these with a real host.
"""
from __future__ import annotations

import json
import shlex
import shutil
import socket
import sys
import time
import uuid as uuidlib
from pathlib import Path

import XenAPI

from .backend import Backend, HostConfig, HostRuntime
from .datamodel import NULL_REF, classes
from .store import new_uuid
from .values import from_epoch, now

MIB = 1 << 20
GIB = 1 << 30
API_MAJOR, API_MINOR = 2, 21
PRODUCT_BRAND = "XenServer"
SOFTWARE_VERSION = {
    "product_version": "8.4.0", "product_version_text": "8", "product_version_text_short": "8",
    "platform_name": "XCP", "platform_version": "3.4.0", "product_brand": PRODUCT_BRAND,
    "build_number": "xapisim", "git_id": "xapisim", "hostname": "localhost", "date": "2026-08-01",
    "xapi": "26.21", "xapi_build": "26.21.1", "xen": "4.17.5-xs", "linux": "4.19.0+1",
    "xencenter_min": "2.21", "xencenter_max": "2.21", "network_backend": "openvswitch",
    "db_schema": "5.786",
}
CPU_FLAGS = ("fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht "
             "syscall nx lm constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq ssse3 fma "
             "cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm")
CPU_MODEL = "Intel(R) Xeon(R) Gold 6238R CPU @ 2.20GHz"
# bios_strings.ml: dmidecode's strings plus the type 11 strings every host carries
BIOS_STRINGS = {
    "bios-vendor": "xapisim", "bios-version": "1.0", "system-manufacturer": "xapisim",
    "system-product-name": "Simulated XenServer host", "system-version": "",
    "system-serial-number": "", "baseboard-manufacturer": "", "baseboard-product-name": "",
    "baseboard-version": "", "baseboard-serial-number": "", "oem-1": "Xen",
    "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d", "hp-rombios": "",
}
TOOLS_SR_DIR = "/opt/xensource/packages/iso"
# SR.allowed_operations as xapi derives them from each SM driver's capabilities
SR_OPERATIONS = {
    "file": ["vdi_enable_cbt", "vdi_list_changed_blocks", "unplug", "plug", "pbd_create",
             "vdi_disable_cbt", "update", "pbd_destroy", "vdi_resize", "vdi_clone",
             "vdi_data_destroy", "scan", "vdi_snapshot", "vdi_mirror", "vdi_create", "vdi_destroy",
             "destroy", "forget", "vdi_introduce", "vdi_set_on_boot"],
    "udev": ["vdi_introduce", "unplug", "plug", "pbd_create", "update", "pbd_destroy", "vdi_clone",
             "scan"],
    "iso": ["forget", "vdi_introduce", "unplug", "plug", "pbd_create", "update", "pbd_destroy",
            "vdi_clone", "scan"],
    # RawISCSISR's capabilities (VDI_CREATE, VDI_DELETE, VDI_INTRODUCE) plus what xapi allows
    # every SR (xapi_sr_operations.ml sm_cap_table): no resize, no snapshot
    "lun": ["scan", "destroy", "forget", "plug", "unplug", "vdi_create", "vdi_destroy",
            "vdi_introduce", "vdi_clone", "pbd_create", "pbd_destroy"],
}


def sr_operations(sr_type: str, content_type: str) -> list[str]:
    """What an SR of this type allows (its SM driver's capabilities)."""
    if sr_type == "udev":
        return list(SR_OPERATIONS["udev"])
    if content_type == "iso" or sr_type == "iso":
        return list(SR_OPERATIONS["iso"])
    if sr_type == "iscsi":
        return list(SR_OPERATIONS["lun"])
    return list(SR_OPERATIONS["file"])
TEMPLATES_JSON = Path(__file__).parent / "datamodel" / "templates.json"


def _known(cls: str, values: dict) -> dict:
    """Only the fields the published datamodel has (newer xapi fields are left out)."""
    fields = classes()[cls].fields
    return {k: v for k, v in values.items() if k in fields}


def build(backend: Backend, local_sr_type: str = "ext") -> None:
    """Populate an empty backend with a fresh install (idempotent only on empty)."""
    store = backend.store
    with store.lock:
        pool = store.create("pool", _known("pool", {
            "name_label": "", "name_description": "", "master": NULL_REF,
            "other_config": {"memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"},
            "restrictions": {"restrict_vtpm": "false"}, "cpu_info": {}, "ha_cluster_stack": "xhad",
            "coordinator_bias": True, "migration_compression": False,
            "local_auth_max_threads": 8, "ext_auth_max_threads": 1,
            "telemetry_frequency": "weekly", "update_sync_frequency": "weekly",
            "tls_verification_enabled": True}))
        eth0 = store.create("network", _known("network", {
            "name_label": "Pool-wide network associated with eth0", "name_description": "",
            "bridge": "xenbr0", "MTU": 1500, "managed": True, "other_config": {},
            "default_locking_mode": "unlocked"}))
        store.create("network", _known("network", {
            "name_label": "Host internal management network",
            "name_description": "Network on which guests will be assigned a private link-local "
                                "IP address which can be used to talk XenAPI",
            "bridge": "xenapi", "MTU": 1500, "managed": True,
            "other_config": {"is_guest_installer_network": "true",
                             "is_host_internal_management_network": "true",
                             "ip_begin": "169.254.0.1", "ip_end": "169.254.255.254",
                             "netmask": "255.255.0.0"},
            "default_locking_mode": "unlocked"}))
        hosts = [_host(backend, hc, i, eth0) for i, hc in enumerate(backend.config.hosts)]
        store.set("pool", pool, master=hosts[0], cpu_info=_pool_cpu_info(store, hosts))
        sizes = [(local_sr_type, backend.config.sr_size_gib)] + list(backend.config.extra_srs)
        default_sr = NULL_REF
        for h in hosts:
            local = NULL_REF
            for n, (sr_type, gib) in enumerate(sizes):
                sr = make_sr(backend, [h], sr_type, gib * GIB,
                             "Local storage" if n == 0 else f"{sr_type.upper()} storage {n}",
                             i18n_key="local-storage" if n == 0 else None)
                local = sr if local == NULL_REF else local
            _udev_srs(backend, h)
            # storage-init: the local SR is the pool's default and the host's suspend/crash SR
            store.set("host", h, suspend_image_sr=local, crash_dump_sr=local)
            if default_sr == NULL_REF:
                default_sr = local
        if backend.config.shared_sr:
            # what an operator adds for live migration: one SR every host sees, the default
            default_sr = make_sr(backend, hosts, backend.config.shared_sr,
                                 backend.config.sr_size_gib * GIB, "NFS virtual disk storage",
                                 shared=True, sm_config={},
                                 device_config={"server": "127.0.0.1",
                                                "serverpath": "/export/xapisim"})
        store.set("pool", pool, default_SR=default_sr)
        _tools_sr(backend, hosts)
        for values in load_templates():
            make_template(backend, values)


def _pool_cpu_info(store, hosts: list[str]) -> dict:
    """create_misc.ml create_pool_cpuinfo: counts summed, the (common) vendor and features."""
    info = {"vendor": "", "socket_count": "0", "cpu_count": "0", "features_pv_host": "",
            "features_hvm_host": ""}
    for h in hosts:
        c = store.get("host", h)["cpu_info"]
        info.update(vendor=c["vendor"], features_pv_host=c["features_pv_host"],
                    features_hvm_host=c["features_hvm_host"],
                    socket_count=str(int(info["socket_count"]) + int(c["socket_count"])),
                    cpu_count=str(int(info["cpu_count"]) + int(c["cpu_count"])))
    return info


def load_templates() -> list[dict]:
    return json.loads(TEMPLATES_JSON.read_text())["templates"]


DOM0_SITE_PACKAGES = "usr/lib/python3/site-packages"
DOM0_LIB = Path(__file__).parent / "dom0lib"


def install_dom0_files(dom0_root: Path, plugin_dirs: list[str]) -> None:
    """What a dom0 offers plugins (XenAPIPlugin), and the plugin sets the config names."""
    for f in DOM0_LIB.glob("*.py"):
        shutil.copy2(f, dom0_root / DOM0_SITE_PACKAGES / f.name)
    # vhd-util's VHD code, importable without loading the whole simulator
    shutil.copy2(Path(__file__).parent / "vhd.py", dom0_root / DOM0_SITE_PACKAGES / "xapisim_vhd.py")
    # the XenAPI SDK, which a dom0 has for plugins that call XAPI back
    shutil.copytree(Path(XenAPI.__file__).parent, dom0_root / DOM0_SITE_PACKAGES / "XenAPI",
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    # the dom0's python3: the standard library and the dom0's own (PYTHONPATH), not this
    # virtualenv's site-packages, whose start-up (.pth files, the editable install's finder)
    # cost each plugin and vhd-util call a third of its CPU
    python = dom0_root / "usr/bin/python3"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
    python.chmod(0o755)
    (dom0_root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    for f in (DOM0_LIB / "bin").iterdir():
        shutil.copy2(f, dom0_root / "usr/sbin" / f.name)
    for d in plugin_dirs:
        for f in Path(d).iterdir():
            if f.is_file():
                shutil.copy2(f, dom0_root / "etc/xapi.d/plugins" / f.name)


def _host(backend: Backend, hc: HostConfig, index: int, network: str) -> str:
    store = backend.store
    total = hc.memory_mib * MIB
    metrics = store.create("host_metrics", {"memory_total": total, "memory_free": total,
                                            "live": True, "last_updated": now()})
    started = f"{time.time():.0f}."
    ref = store.create("host", _known("host", {
        "name_label": hc.hostname, "name_description": "Default install", "hostname": hc.hostname,
        "address": hc.address, "enabled": True, "metrics": metrics,
        "API_version_major": API_MAJOR, "API_version_minor": API_MINOR,
        "API_version_vendor": "XenSource", "API_version_vendor_implementation": {},
        "software_version": dict(SOFTWARE_VERSION, hostname=hc.hostname),
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p",
                         "hvm-3.0-x86_64"],
        # create_misc.ml create_host_cpu
        "cpu_info": {"cpu_count": str(hc.cpus), "socket_count": "1", "threads_per_core": "2",
                     "nr_nodes": "1", "vendor": "GenuineIntel", "speed": "2194.842",
                     "modelname": CPU_MODEL, "family": "6", "model": "85", "stepping": "7",
                     "flags": CPU_FLAGS, "features_pv": "1fc9cbf5-f6f83203-2991cbf5-00000123",
                     "features_hvm": "1fcbfbff-f7fa3223-2d93fbff-00000423",
                     "features_pv_host": "1fc9cbf5-f6f83203-2991cbf5-00000123",
                     "features_hvm_host": "1fcbfbff-f7fa3223-2d93fbff-00000423"},
        "bios_strings": dict(BIOS_STRINGS), "chipset_info": {"iommu": "true"},
        # dbsync_slave.ml refresh_localhost_info: float seconds since the epoch
        "other_config": {"agent_start_time": started, "boot_time": started,
                         "iscsi_iqn": f"iqn.2026-08.com.xapisim:{uuidlib.uuid4().hex[:8]}",
                         "multipathhandle": "dmp"},
        "iscsi_iqn": "", "multipathing": True,
        "license_params": {"sku_type": "free", "restrict_hotfix_apply": "false"},
        "license_server": {"address": "localhost", "port": "27000"},
        "edition": "xenserver-premium", "memory_overhead": 0, "external_auth_type": "",
        "sched_policy": "credit", "supported_bootloaders": ["pygrub", "eliloader"],
        "ssl_legacy": False, "https_only": False, "tls_verification_enabled": True,
        "uefi_certificates": "", "display": "enabled", "power_on_mode": "",
        "virtual_hardware_platform_versions": [0, 1, 2]}))
    store.set("host", ref, iscsi_iqn=store.get("host", ref)["other_config"]["iscsi_iqn"])
    dom0_root = backend.state_dir / "hosts" / hc.address / "dom0"
    backend.hosts[ref] = HostRuntime(ref, hc, dom0_root)
    for d in ("etc/xapi.d/plugins", "var/run/sr-mount", "var/log/xen/guest",
              "boot/guest", TOOLS_SR_DIR.lstrip("/"), DOM0_SITE_PACKAGES):
        (dom0_root / d).mkdir(parents=True, exist_ok=True)
    install_dom0_files(dom0_root, backend.config.plugin_dirs)
    (dom0_root / "etc/xensource-inventory").write_text(
        f"INSTALLATION_UUID='{store.get('host', ref)['uuid']}'\n"
        f"PRODUCT_VERSION='{SOFTWARE_VERSION['product_version']}'\n"
        "MANAGEMENT_INTERFACE='xenbr0'\n")
    for n in range(hc.cpus):
        store.create("host_cpu", _known("host_cpu", {
            "host": ref, "number": n, "vendor": "GenuineIntel", "speed": 2194,
            "modelname": CPU_MODEL, "family": 6, "model": 85, "stepping": "7",
            "flags": CPU_FLAGS, "features": "", "utilisation": 0.0, "other_config": {}}))
    pif_metrics = store.create("PIF_metrics", _known("PIF_metrics", {
        "carrier": True, "device_name": "", "vendor_name": "Intel Corporation",
        "device_id": "1533", "vendor_id": "8086", "speed": 1000, "duplex": True,
        "pci_bus_path": "0000:01:00.0", "last_updated": now(), "other_config": {}}))
    store.create("PIF", _known("PIF", {
        "device": "eth0", "network": network, "host": ref,
        "MAC": f"02:00:00:00:{index:02x}:01", "MTU": 1500, "VLAN": -1, "physical": True,
        "currently_attached": True, "management": True, "ip_configuration_mode": "Static",
        "IP": hc.address, "netmask": "255.0.0.0", "gateway": "", "DNS": "", "managed": True,
        "primary_address_type": "IPv4", "ipv6_configuration_mode": "None", "IPv6": [],
        "metrics": pif_metrics, "properties": {"gro": "on"}, "igmp_snooping_status": "unknown",
        "capabilities": [], "other_config": {}, "disallow_unplug": False}))
    dom0 = _dom0(backend, hc, ref)
    store.set("host", ref, control_domain=dom0)
    store.set("host_metrics", metrics, memory_free=total - hc.dom0_memory_mib * MIB)
    return ref


def _dom0(backend: Backend, hc: HostConfig, host: str) -> str:
    """create_misc.ml create_domain_zero_record and its metrics and consoles."""
    store = backend.store
    mem = hc.dom0_memory_mib * MIB
    vcpus = 4
    vm_metrics = store.create("VM_metrics", _known("VM_metrics", {
        "memory_actual": mem, "VCPUs_number": vcpus,
        "VCPUs_utilisation": {i: 0.0 for i in range(1, vcpus + 1)}, "state": [],
        "start_time": from_epoch(0), "install_time": from_epoch(0), "last_updated": from_epoch(0),
        "current_domain_type": "pv", "hvm": False}))
    dom0 = store.create("VM", _known("VM", {
        "name_label": f"Control domain on host: {hc.hostname}",
        "name_description": "The domain which manages physical devices and manages other "
                            "domains",
        "power_state": "Running", "is_control_domain": True, "is_a_template": False,
        "resident_on": host, "affinity": host, "domid": 0, "domarch": "x64",
        "memory_static_max": mem, "memory_dynamic_max": mem, "memory_dynamic_min": mem,
        "memory_static_min": mem, "memory_target": mem, "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus, "metrics": vm_metrics, "domain_type": "pv", "user_version": 1,
        "actions_after_shutdown": "destroy", "actions_after_reboot": "destroy",
        "actions_after_crash": "destroy", "HVM_boot_policy": "", "HVM_shadow_multiplier": 1.0,
        "other_config": {"storage_driver_domain": ""}}))
    for protocol, port in (("rfb", 5900), ("vt100", 9500)):
        con = store.create("console", {"protocol": protocol, "VM": dom0, "other_config": {}})
        # dbsync_master.ml refresh_console_urls
        store.set("console", con, location=f"https://{hc.address}/console?ref={con}",
                  **({"port": port} if "port" in classes()["console"].fields else {}))
    return dom0


def _pbd(backend: Backend, host: str, sr: str, device_config: dict) -> str:
    store = backend.store
    dom0 = store.get("host", host)["control_domain"]
    return store.create("PBD", {"host": host, "SR": sr, "currently_attached": True,
                                "device_config": device_config,
                                "other_config": {"storage_driver_domain": dom0}})


def make_sr(backend: Backend, hosts: list[str], sr_type: str, size: int, name: str,
            content_type: str = "user", shared: bool | None = None,
            other_config: dict | None = None, i18n_key: str | None = None,
            description: str = "", sm_config: dict | None = None,
            device_config: dict | None = None) -> str:
    """An SR with a plugged PBD on each of ``hosts``; installer SRs carry storage-init's keys."""
    store = backend.store
    oc = dict(other_config or {})
    if i18n_key:
        oc.update({"i18n-key": i18n_key, "i18n-original-value-name_label": name})
        if description:
            oc["i18n-original-value-name_description"] = description
    if sm_config is None:
        sm_config = {"devserial": "scsi-36001405xapisim0000000000000000"}
        if sr_type in ("lvm", "lvmoiscsi", "lvmohba"):
            sm_config.update(allocation="thick", use_vhd="true")
    sr = store.create("SR", _known("SR", {
        "name_label": name, "name_description": description, "type": sr_type,
        "content_type": content_type,
        "shared": bool(shared) if shared is not None else sr_type == "nfs",
        "physical_size": size, "physical_utilisation": 0, "virtual_allocation": 0,
        "other_config": oc, "sm_config": sm_config,
        "allowed_operations": sr_operations(sr_type, content_type)}))
    uuid = store.get("SR", sr)["uuid"]
    if device_config is None:
        device_config = ({"server": "127.0.0.1", "serverpath": "/export"} if sr_type == "nfs"
                         else {"device": "/dev/sda3"})
    for h in hosts:
        _pbd(backend, h, sr, dict(device_config))
        backend.disks.attach_sr(h, uuid, sr_type)
    return sr


def _udev_srs(backend: Backend, host: str) -> None:
    """storage-init ``create_udev_srs``: hot-plugged disks and the host's DVD drives."""
    make_sr(backend, [host], "udev", 0, "Removable storage", content_type="disk",
            i18n_key="local-hotplug-disk", sm_config={"type": "block"},
            device_config={"location": "/dev/xapi/block"})
    make_sr(backend, [host], "udev", 0, "DVD drives", content_type="iso",
            i18n_key="local-hotplug-cd", description="Physical DVD drives",
            sm_config={"type": "cd"}, device_config={"location": "/dev/xapi/cd"})


def _tools_sr(backend: Backend, hosts: list[str]) -> str:
    """dbsync_master.ml ``create_tools_sr``: one shared ISO SR for the pool, a PBD per host."""
    name = f"{PRODUCT_BRAND} Tools"
    description = f"{name} ISOs"
    sr = make_sr(backend, hosts, "iso", 0, name, content_type="iso", shared=True,
                 other_config={"xensource_internal": "true", "xenserver_tools_sr": "true"},
                 i18n_key="xenserver-tools", description=description, sm_config={},
                 device_config={"path": TOOLS_SR_DIR, "location": TOOLS_SR_DIR})
    if "is_tools_sr" in classes()["SR"].fields:
        backend.store.set("SR", sr, is_tools_sr=True)
    return sr


def make_template(backend: Backend, values: dict) -> str:
    """A default template as the guest-templates loader leaves it after its metadata import.

    ``import.ml`` drops ``other_config:default_template`` and the loader then sets
    ``is_default_template``; ``mac_seed`` is the template's own.
    """
    store = backend.store
    rec = dict(values)
    oc = dict(rec.pop("other_config", {}))
    oc["mac_seed"] = str(uuidlib.uuid4())
    uuid = rec.pop("uuid", None)
    metrics = store.create("VM_metrics", {"install_time": now(), "last_updated": now(),
                                          "start_time": from_epoch(0)})
    base = {"power_state": "Halted", "is_a_template": True, "is_default_template": True,
            "user_version": 1, "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart", "actions_after_crash": "restart", "domid": -1,
            "metrics": metrics, "other_config": oc}
    ref = store.create("VM", _known("VM", {**base, **rec, "other_config": oc}))
    if uuid:
        store.change_uuid("VM", ref, uuid)
    backend.refresh("VM", ref)
    return ref


def local_hostname() -> str:
    return socket.gethostname()


__all__ = ["build", "make_sr", "make_template", "new_uuid"]
