"""What a fresh XenServer 8 pool contains before anyone touches it.

One pool; per host: host, host_metrics, host_cpus, the control domain (dom0)
with its metrics and console, a management PIF on ``Pool-wide network
associated with eth0`` (bridge ``xenbr0``), the host-internal management
network (HIMN, bridge ``xenapi``), a local SR and the XenServer Tools ISO SR.
A small set of the default templates as XenServer 8 ships them.
"""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from .backend import Backend, HostConfig, HostRuntime
from .datamodel import NULL_REF
from .store import new_uuid
from .values import now

MIB = 1 << 20
GIB = 1 << 30
API_MAJOR, API_MINOR = 2, 21
SOFTWARE_VERSION = {
    "product_version": "8.4.0", "product_version_text": "8", "product_version_text_short": "8",
    "platform_name": "XCP", "platform_version": "3.4.0", "product_brand": "XenServer",
    "build_number": "xapisim", "hostname": "localhost", "date": "2026-08-01",
    "xapi": "26.21", "xapi_build": "26.21.1", "xen": "4.17.5", "linux": "4.19.0+1",
    "xencenter_min": "2.21", "xencenter_max": "2.21", "network_backend": "openvswitch",
    "db_schema": "5.786",
}

# (name, HVM?, uefi?, other_config extras); disks as xapi's provision reads them
TEMPLATES = [
    ("Other install media", True, False, {"install-methods": "cdrom"}),
    ("Debian Bookworm 12", True, False, {"install-methods": "cdrom,nfs,http,ftp",
                                         "linux_template": "true"}),
    ("Ubuntu Jammy Jellyfish 22.04", True, False, {"install-methods": "cdrom,nfs,http,ftp",
                                                   "linux_template": "true"}),
    ("Rocky Linux 9", True, True, {"install-methods": "cdrom,nfs,http,ftp",
                                   "linux_template": "true"}),
    ("Windows 10 (64-bit)", True, True, {"install-methods": "cdrom"}),
    ("Windows Server 2022 (64-bit)", True, True, {"install-methods": "cdrom"}),
]


def _disks_xml(size: int) -> str:
    return (f'<provision><disk device="0" size="{size}" sr="" bootable="true" '
            'type="system"/></provision>')


def build(backend: Backend, local_sr_type: str = "ext") -> None:
    """Populate an empty backend with a fresh install (idempotent only on empty)."""
    store = backend.store
    with store.lock:
        pool = store.create("pool", {"name_label": "", "master": NULL_REF,
                                     "other_config": {}, "restrictions": {}, "cpu_info": {},
                                     "tls_verification_enabled": True})
        eth0 = store.create("network", {"name_label": "Pool-wide network associated with eth0",
                                        "bridge": "xenbr0", "MTU": 1500, "managed": True,
                                        "other_config": {}})
        himn = store.create("network", {
            "name_label": "Host internal management network", "bridge": "xenapi",
            "MTU": 1500, "managed": True,
            "other_config": {"is_guest_installer_network": "true",
                             "is_host_internal_management_network": "true",
                             "ip_begin": "169.254.0.1", "ip_end": "169.254.255.254",
                             "netmask": "255.255.0.0"}})
        hosts = []
        for i, hc in enumerate(backend.config.hosts):
            hosts.append(_host(backend, hc, i, eth0))
        store.set("pool", pool, master=hosts[0], name_label="")
        sizes = [(local_sr_type, backend.config.sr_size_gib)] + list(backend.config.extra_srs)
        default_sr = NULL_REF
        for h in hosts:
            for n, (sr_type, gib) in enumerate(sizes):
                sr = make_sr(backend, [h], sr_type, gib * GIB,
                             "Local storage" if n == 0 else f"{sr_type.upper()} storage {n}")
                if default_sr == NULL_REF:
                    default_sr = sr
            make_sr(backend, [h], "iso", 0, "XenServer Tools", content_type="iso",
                    shared=False, other_config={"xenserver_tools_sr": "true"})
        store.set("pool", pool, default_SR=default_sr, suspend_image_SR=default_sr,
                  crash_dump_SR=default_sr)
        _ = himn
        for name, hvm, uefi, extra in TEMPLATES:
            make_template(backend, name, hvm, uefi, extra)


DOM0_SITE_PACKAGES = "usr/lib/python3/site-packages"
DOM0_LIB = Path(__file__).parent / "dom0lib"


def install_dom0_files(dom0_root: Path, plugin_dirs: list[str]) -> None:
    """What a dom0 offers plugins (XenAPIPlugin), and the plugin sets the config names."""
    for f in DOM0_LIB.glob("*.py"):
        shutil.copy2(f, dom0_root / DOM0_SITE_PACKAGES / f.name)
    # vhd-util's VHD code, importable without loading the whole simulator
    shutil.copy2(Path(__file__).parent / "vhd.py", dom0_root / DOM0_SITE_PACKAGES / "xapisim_vhd.py")
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
    ref = store.create("host", {
        "name_label": hc.hostname, "hostname": hc.hostname, "address": hc.address,
        "enabled": True, "metrics": metrics, "API_version_major": API_MAJOR,
        "API_version_minor": API_MINOR, "API_version_vendor": "XenSource",
        "software_version": dict(SOFTWARE_VERSION, hostname=hc.hostname),
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p",
                         "hvm-3.0-x86_64"],
        "cpu_info": {"cpu_count": str(hc.cpus), "socket_count": "1", "vendor": "GenuineIntel",
                     "speed": "2600.000", "modelname": "Intel(R) Xeon(R) xapisim CPU",
                     "family": "6", "model": "85", "stepping": "7", "flags": "fpu de tsc msr pae",
                     "features": "", "features_pv": "", "features_hvm": ""},
        # xapi records these as float seconds since the epoch (xapi.ml, Xapi_host)
        "other_config": {"agent_start_time": f"{time.time():.0f}.", "boot_time": f"{time.time():.0f}."},
        "license_params": {"sku_type": "free"}, "edition": "xenserver-premium",
        "memory_overhead": 0, "external_auth_type": "", "sched_policy": "credit",
        "supported_bootloaders": ["pygrub", "eliloader"], "ssl_legacy": False,
        "https_only": False, "tls_verification_enabled": True,
        "uefi_certificates": "", "display": "enabled",
    })
    dom0_root = backend.state_dir / "hosts" / hc.address / "dom0"
    backend.hosts[ref] = HostRuntime(ref, hc, dom0_root)
    for d in ("etc/xapi.d/plugins", "var/run/sr-mount", "var/log/xen/guest",
              "boot/guest", "opt/xensource/packages/iso", DOM0_SITE_PACKAGES):
        (dom0_root / d).mkdir(parents=True, exist_ok=True)
    install_dom0_files(dom0_root, backend.config.plugin_dirs)
    (dom0_root / "etc/xensource-inventory").write_text(
        f"INSTALLATION_UUID='{store.get('host', ref)['uuid']}'\n"
        f"PRODUCT_VERSION='{SOFTWARE_VERSION.get('product_version', '8.4.0')}'\n"
        "MANAGEMENT_INTERFACE='xenbr0'\n")
    for n in range(hc.cpus):
        store.create("host_cpu", {"host": ref, "number": n, "vendor": "GenuineIntel",
                                  "speed": 2600, "modelname": "Intel(R) Xeon(R) xapisim CPU",
                                  "family": 6, "model": 85, "stepping": "7", "flags": "",
                                  "features": "", "utilisation": 0.0})
    store.create("PIF", {"device": "eth0", "network": network, "host": ref,
                         "MAC": f"02:00:00:00:{index:02x}:01", "MTU": 1500, "VLAN": -1,
                         "physical": True, "currently_attached": True, "management": True,
                         "ip_configuration_mode": "Static", "IP": hc.address,
                         "netmask": "255.0.0.0", "gateway": "", "DNS": "", "managed": True,
                         "primary_address_type": "IPv4", "metrics": NULL_REF})
    dom0_mem = hc.dom0_memory_mib * MIB
    vm_metrics = store.create("VM_metrics", {"memory_actual": dom0_mem, "VCPUs_number": 4,
                                             "start_time": now(), "install_time": now(),
                                             "last_updated": now(), "state": [],
                                             "current_domain_type": "pv"})
    dom0 = store.create("VM", {
        "name_label": f"Control domain on host: {hc.hostname}", "power_state": "Running",
        "is_control_domain": True, "is_a_template": False, "resident_on": ref,
        "domid": 0, "memory_static_max": dom0_mem, "memory_dynamic_max": dom0_mem,
        "memory_dynamic_min": dom0_mem, "memory_static_min": dom0_mem, "memory_target": dom0_mem,
        "VCPUs_max": 4, "VCPUs_at_startup": 4, "metrics": vm_metrics, "domain_type": "pv",
        "user_version": 1, "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "HVM_boot_policy": "",
        "other_config": {"storage_driver_domain": ""},
    })
    store.set("host", ref, control_domain=dom0)
    store.create("console", {"protocol": "rfb", "VM": dom0,
                             "location": f"https://{hc.address}/console?ref=dom0",
                             "other_config": {}})
    memory_free = total - dom0_mem
    store.set("host_metrics", metrics, memory_free=memory_free)
    return ref


def make_sr(backend: Backend, hosts: list[str], sr_type: str, size: int, name: str,
            content_type: str = "user", shared: bool | None = None,
            other_config: dict | None = None) -> str:
    store = backend.store
    sr = store.create("SR", {
        "name_label": name, "type": sr_type, "content_type": content_type,
        "shared": bool(shared) if shared is not None else sr_type == "nfs",
        "physical_size": size, "physical_utilisation": 0, "virtual_allocation": 0,
        "other_config": other_config or {}, "sm_config": {"devserial": "scsi-xapisim"},
        "allowed_operations": ["forget", "VDI_introduce", "VDI_create", "VDI_destroy",
                               "VDI_clone", "VDI_snapshot", "VDI_resize", "scan", "update",
                               "plug", "unplug", "destroy"],
    })
    uuid = store.get("SR", sr)["uuid"]
    for h in hosts:
        store.create("PBD", {"host": h, "SR": sr, "currently_attached": True,
                             "device_config": {"device": "/dev/sdb"} if sr_type != "nfs" else
                             {"server": "127.0.0.1", "serverpath": "/export"},
                             "other_config": {}})
        backend.disks.attach_sr(h, uuid, sr_type)
    return sr


def make_template(backend: Backend, name: str, hvm: bool, uefi: bool, extra: dict) -> str:
    store = backend.store
    oc = {"default_template": "true", "disks": _disks_xml(32 * GIB), **extra}
    platform = {"acpi": "1", "apic": "true", "pae": "true", "viridian": "true" if "Windows" in name
                else "false", "nx": "true", "hpet": "true", "device-model": "qemu-upstream-compat",
                "secureboot": "auto" if uefi else "false"}
    return store.create("VM", {
        "name_label": name, "name_description": f"Template for {name}",
        "is_a_template": True, "is_default_template": True, "power_state": "Halted",
        "memory_static_max": 2 * GIB, "memory_dynamic_max": 2 * GIB,
        "memory_dynamic_min": 2 * GIB, "memory_static_min": 1 * GIB,
        "VCPUs_max": 2, "VCPUs_at_startup": 2, "HVM_boot_policy": "BIOS order" if hvm else "",
        "HVM_boot_params": {"order": "cdn", **({"firmware": "uefi"} if uefi else {})},
        "platform": platform, "other_config": oc, "domain_type": "hvm" if hvm else "pv",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "user_version": 1,
        "recommendations": '<restrictions><restriction field="memory-static-max" '
                           'max="137438953472"/></restrictions>',
        "reference_label": name.lower().replace(" ", "-"),
    })


def local_hostname() -> str:
    return socket.gethostname()


__all__ = ["build", "make_sr", "make_template", "new_uuid"]
