"""The XAPI host as Nova sees it: resources, inventory, uptime, maintenance, power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import os_resource_classes as orc
from nova import conf as nova_conf
from nova import exception
from nova.objects import fields as obj_fields
from oslo_serialization import jsonutils
from oslo_utils import units, versionutils

from nova_xenapi import plugins
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

CONF = nova_conf.CONF
HYPERVISOR_TYPE = "XenServer"


@dataclass
class HostStats:
    hostname: str
    uuid: str
    vcpus: int
    memory_mb: int
    memory_free_mb: int
    memory_reserved_mb: int  # dom0 and the hypervisor's own overhead
    disk_gb: int
    disk_used_gb: int
    version: str
    cpu_info: dict


def stats(session: XenAPISession, sr_filter: str) -> HostStats:
    """Read the host's capacity (one get_record per object involved)."""
    host = session.call_xenapi("host.get_record", session.host_ref)
    metrics = session.call_xenapi("host_metrics.get_record", host["metrics"])
    # host_metrics.memory_free is removed from the API (tampa); xapi computes it on request
    free = int(session.call_xenapi("host.compute_free_memory", session.host_ref))
    dom0 = session.call_xenapi("VM.get_record", host["control_domain"]) \
        if host.get("control_domain", "OpaqueRef:NULL") != "OpaqueRef:NULL" else None
    sr = session.call_xenapi("SR.get_record", disks.find_sr(session, sr_filter))
    dom0_mem = int(dom0["memory_target"] or dom0["memory_static_max"]) if dom0 else 0
    overhead = int(host.get("memory_overhead") or 0)
    version = host["software_version"].get("product_version") \
        or host["software_version"].get("platform_version", "0.0.0")
    cpu = host.get("cpu_info", {})
    return HostStats(
        hostname=host["hostname"],
        uuid=host["uuid"],
        vcpus=len(host["host_CPUs"]),
        memory_mb=int(metrics["memory_total"]) // units.Mi,
        memory_free_mb=free // units.Mi,
        memory_reserved_mb=(dom0_mem + overhead) // units.Mi,
        disk_gb=int(sr["physical_size"]) // units.Gi,
        disk_used_gb=int(sr["physical_utilisation"]) // units.Gi,
        version=version,
        cpu_info={"vendor": cpu.get("vendor", ""), "model": cpu.get("modelname", ""),
                  "arch": obj_fields.Architecture.X86_64,
                  "topology": {"sockets": int(cpu.get("socket_count", 1) or 1),
                               "cores": len(host["host_CPUs"]), "threads": 1},
                  "features": []},
    )


def available_resource(s: HostStats) -> dict[str, Any]:
    """The dict ComputeDriver.get_available_resource returns."""
    return {
        "vcpus": s.vcpus,
        "memory_mb": s.memory_mb,
        "local_gb": s.disk_gb,
        "vcpus_used": 0,
        "memory_mb_used": s.memory_mb - s.memory_free_mb,
        "local_gb_used": s.disk_used_gb,
        "hypervisor_type": HYPERVISOR_TYPE,
        "hypervisor_version": versionutils.convert_version_to_int(_numeric(s.version)),
        "hypervisor_hostname": s.hostname,
        "cpu_info": jsonutils.dumps(s.cpu_info),
        "disk_available_least": s.disk_gb - s.disk_used_gb,
        "supported_instances": [
            (obj_fields.Architecture.X86_64, obj_fields.HVType.XEN, obj_fields.VMMode.HVM),
            (obj_fields.Architecture.X86_64, obj_fields.HVType.XEN, obj_fields.VMMode.XEN),
        ],
        "numa_topology": None,
        "uuid": s.uuid,
    }


def _numeric(version: str) -> str:
    parts = [p for p in version.split(".") if p.isdigit()]
    return ".".join(parts[:3]) or "0"


def _ratio(configured: float | None, initial: float, existing: dict) -> float:
    if configured:
        return configured
    return existing.get("allocation_ratio", initial)


def inventory(s: HostStats, existing: dict[str, dict]) -> dict[str, dict]:
    """Placement inventory: VCPU, MEMORY_MB (dom0 and overhead reserved), DISK_GB."""
    return {
        orc.VCPU: {"total": s.vcpus, "min_unit": 1, "max_unit": s.vcpus, "step_size": 1,
                   "reserved": CONF.reserved_host_cpus,
                   "allocation_ratio": _ratio(CONF.cpu_allocation_ratio,
                                              CONF.initial_cpu_allocation_ratio,
                                              existing.get(orc.VCPU, {}))},
        orc.MEMORY_MB: {"total": s.memory_mb, "min_unit": 1, "max_unit": s.memory_mb, "step_size": 1,
                        "reserved": CONF.reserved_host_memory_mb + s.memory_reserved_mb,
                        "allocation_ratio": _ratio(CONF.ram_allocation_ratio,
                                                   CONF.initial_ram_allocation_ratio,
                                                   existing.get(orc.MEMORY_MB, {}))},
        orc.DISK_GB: {"total": s.disk_gb, "min_unit": 1, "max_unit": max(1, s.disk_gb),
                      "step_size": 1,
                      "reserved": (CONF.reserved_host_disk_mb + units.Ki - 1) // units.Ki,
                      "allocation_ratio": _ratio(CONF.disk_allocation_ratio,
                                                 CONF.initial_disk_allocation_ratio,
                                                 existing.get(orc.DISK_GB, {}))},
    }


def uptime(session: XenAPISession) -> str:
    """dom0's ``uptime`` output (with its load averages), from the ``xenhost.py`` plugin."""
    return plugins.call(session, "xenhost.py", "host_uptime")


def set_enabled(session: XenAPISession, enabled: bool) -> str:
    session.call_xenapi("host.enable" if enabled else "host.disable", session.host_ref)
    return "enabled" if enabled else "disabled"


def power_action(session: XenAPISession, action: str) -> str:
    """Reboot or shut down the host (disabled first, so nothing new starts; XAPI shuts down the
    VMs still running there), or power it on through the pool master."""
    if action == "startup":
        session.call_async("host.power_on", session.host_ref, timeout=None)
        return action
    if action not in ("reboot", "shutdown"):
        raise exception.NovaException(f"unknown host power action {action!r}")
    session.call_xenapi("host.disable", session.host_ref)
    try:
        session.call_async(f"host.{action}", session.host_ref, timeout=None)
    except Exception:
        session.call_xenapi("host.enable", session.host_ref)  # nothing happened: leave it usable
        raise
    return action


def maintenance_mode(session: XenAPISession, on: bool) -> str:
    """Disable the host and move its running VMs to other pool members (or back)."""
    if on:
        session.call_xenapi("host.disable", session.host_ref)
        try:
            session.call_async("host.evacuate", session.host_ref, "OpaqueRef:NULL", 0, timeout=None)
        except Exception:
            session.call_xenapi("host.enable", session.host_ref)  # nothing moved: leave it usable
            raise
        return "on_maintenance"
    session.call_xenapi("host.enable", session.host_ref)
    return "off_maintenance"


def keep_node_identity(host_uuid: str) -> None:
    """Persist this compute node's identity, as Nova expects of every driver but ironic.

    The driver gives each node the XAPI host's uuid, so Nova never writes its
    ``compute_id`` file in ``state_path`` (it does that only for drivers without
    a uuid per node); but at every later start it refuses to run without one.
    So the driver writes it, once, with the host's uuid.  A file that names
    another node means this nova-compute's ``connection_url`` now names a
    different host than before: refused, rather than taking over the other
    node's servers.
    """
    import nova.virt.node
    known = nova.virt.node.read_local_node_uuid()
    if known is None:
        nova.virt.node.write_local_node_uuid(host_uuid)
    elif known != host_uuid:
        raise exception.InvalidConfiguration(
            f"this nova-compute's state_path ({CONF.state_path}) belongs to compute node {known}, "
            f"but [xenserver] connection_url names XenServer host {host_uuid}: a nova-compute "
            "manages one host for its whole life")
