"""A fresh xapisim pool holds what a freshly installed XenServer 8 / XCP-ng 8.3 pool holds.

Each test names the xapi (or SM) source it follows; ``docs/fresh-install.md``
is the table these rows come from.  Every assertion runs over both wire
protocols (the ``client`` fixture) unless it needs the SDK.
"""
from __future__ import annotations

import re

import pytest
import XenAPI

from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
from tests.conftest import PASSWORD


def fails(client, method, *args):
    with pytest.raises(XenAPI.Failure) as e:
        client(method, *args)
    return e.value.details


def srs_named(client, name):
    return [(r, v) for r, v in client("SR.get_all_records").items() if v["name_label"] == name]


# -- the three things real clients tripped on ---------------------------------
def test_local_sr_carries_the_installers_i18n_keys(client):
    """SM's scripts/storage-init sr_create: i18n-key and i18n-original-value-name_label."""
    local = srs_named(client, "Local storage")
    assert len(local) == 2  # one per host of the fixture's pool
    for _, rec in local:
        assert rec["other_config"]["i18n-key"] == "local-storage"
        assert rec["other_config"]["i18n-original-value-name_label"] == "Local storage"
        assert rec["content_type"] == "user" and rec["type"] == "ext" and not rec["shared"]


def test_sr_matching_filter_on_i18n_key_finds_this_hosts_local_sr(sim):
    """The driver's ``other-config:i18n-key=local-storage`` picks the SR plugged into its host."""
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr = disks.find_sr(s, "other-config:i18n-key=local-storage")
    pbd_hosts = {s.call_xenapi("PBD.get_host", p) for p in s.call_xenapi("SR.get_PBDs", sr)}
    assert pbd_hosts == {s.host_ref}


def _installable(client, name):
    """A copy of a default template whose disks point at the default SR (as xe vm-install does)."""
    vm = client("VM.clone", client("VM.get_by_name_label", name)[0], "installed")
    pool = client("pool.get_all")[0]
    sr_uuid = client("SR.get_uuid", client("pool.get_default_SR", pool))
    xml = client("VM.get_other_config", vm)["disks"].replace('sr=""', f'sr="{sr_uuid}"')
    client("VM.remove_from_other_config", vm, "disks")
    client("VM.add_to_other_config", vm, "disks", xml)
    return vm


def test_provision_makes_a_vm_with_the_templates_disks(client):
    """xapi_vm.ml provision: is_a_template := false first; xapi_templates.ml makes the disks."""
    vm = _installable(client, "Debian Bookworm 12")
    client("VM.provision", vm)
    rec = client("VM.get_record", vm)
    assert rec["is_a_template"] is False and "disks" not in rec["other_config"]
    (vbd,) = rec["VBDs"]
    vbd_rec = client("VBD.get_record", vbd)
    assert vbd_rec["userdevice"] == "0" and vbd_rec["bootable"] is True
    assert vbd_rec["unpluggable"] is False and vbd_rec["other_config"] == {"owner": ""}
    vdi = client("VDI.get_record", vbd_rec["VDI"])
    assert int(vdi["virtual_size"]) == 10 << 30
    assert vdi["name_label"] == "0" and vdi["name_description"] == "Created by template provisioner"
    assert vdi["sm_config"]["vmhint"] == rec["uuid"]
    client("VM.start", vm, False, False)  # no longer refused as a template
    assert client("VM.get_power_state", vm) == "Running"


def test_provision_needs_an_sr_uuid_and_cleans_up(client):
    """xapi_templates.ml create_disk: SR.get_by_uuid fails -> UUID_INVALID [sr; uuid]."""
    tmpl = client("VM.get_by_name_label", "Debian Bookworm 12")[0]
    vm = client("VM.clone", tmpl, "no-sr")
    vdis = len(client("VDI.get_all"))
    assert fails(client, "VM.provision", vm) == ["UUID_INVALID", "sr", ""]
    assert len(client("VDI.get_all")) == vdis and client("VM.get_VBDs", vm) == []
    # as in xapi, the VM has already stopped being a template
    assert client("VM.get_is_a_template", vm) is False
    assert fails(client, "VM.provision", vm)[0] == "PROVISION_ONLY_ALLOWED_ON_TEMPLATE"


# -- the pool -------------------------------------------------------------------
def test_pool_record(client):
    """dbsync_master.ml create_pool_record, storage-init set_default_sr."""
    (pool,) = client("pool.get_all")
    rec = client("pool.get_record", pool)
    assert rec["name_label"] == ""
    assert rec["other_config"] == {"memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"}
    assert rec["ha_cluster_stack"] == "xhad" and rec["ha_enabled"] is False
    assert rec["suspend_image_SR"] == "OpaqueRef:NULL" and rec["crash_dump_SR"] == "OpaqueRef:NULL"
    default = client("SR.get_record", rec["default_SR"])
    assert default["name_label"] == "Local storage"
    master_pbds = client("host.get_PBDs", rec["master"])
    assert set(default["PBDs"]) & set(master_pbds)
    hosts = client("host.get_all_records")
    assert int(rec["cpu_info"]["cpu_count"]) == sum(int(h["cpu_info"]["cpu_count"])
                                                    for h in hosts.values())
    assert set(rec["cpu_info"]) == {"vendor", "socket_count", "cpu_count", "features_pv_host",
                                    "features_hvm_host"}


# -- each host ------------------------------------------------------------------
SOFTWARE_VERSION_KEYS = {"product_version", "product_version_text", "product_version_text_short",
                         "platform_name", "platform_version", "product_brand", "xapi",
                         "build_number", "git_id", "hostname", "date", "xapi_build", "xen",
                         "linux", "xencenter_min", "xencenter_max", "network_backend", "db_schema"}


BIOS_STRING_KEYS = {"bios-vendor", "bios-version", "system-manufacturer", "system-product-name",
                    "system-version", "system-serial-number", "baseboard-manufacturer",
                    "baseboard-product-name", "baseboard-version", "baseboard-serial-number",
                    "oem-1", "oem-2", "hp-rombios"}


def test_host_record(client):
    """create_misc.ml make_software_version / create_host_cpu, bios_strings.ml, storage-init."""
    for rec in client("host.get_all_records").values():
        assert set(rec["software_version"]) == SOFTWARE_VERSION_KEYS
        assert rec["software_version"]["hostname"] == rec["hostname"]
        assert re.fullmatch(r"\d+\.\d+", rec["software_version"]["xapi"])
        assert (int(rec["API_version_major"]), int(rec["API_version_minor"])) == (2, 21)
        assert {"cpu_count", "socket_count", "threads_per_core", "nr_nodes", "vendor", "speed",
                "modelname", "family", "model", "stepping", "flags", "features_pv",
                "features_hvm", "features_pv_host", "features_hvm_host"} == set(rec["cpu_info"])
        assert len(rec["host_CPUs"]) == int(rec["cpu_info"]["cpu_count"])
        assert set(rec["bios_strings"]) == BIOS_STRING_KEYS
        assert rec["bios_strings"]["oem-1"] == "Xen" and rec["bios_strings"]["hp-rombios"] == ""
        assert rec["bios_strings"]["oem-2"].startswith("MS_VM_CERT/SHA1/")
        assert rec["chipset_info"] == {"iommu": "true"}
        assert rec["multipathing"] is True and rec["other_config"]["multipathhandle"] == "dmp"
        assert float(rec["other_config"]["boot_time"]) > 0
        assert float(rec["other_config"]["agent_start_time"]) >= float(rec["other_config"]["boot_time"])
        assert rec["license_server"] == {"address": "localhost", "port": "27000"}
        assert rec["patches"] == [] and rec["updates"] == [] and rec["crashdumps"] == []
        local = client("SR.get_record", rec["suspend_image_sr"])
        assert local["name_label"] == "Local storage" and rec["crash_dump_sr"] == rec["suspend_image_sr"]
        assert client("host_metrics.get_live", rec["metrics"]) is True


def test_management_pif_and_networks(client):
    """Management PIF on xenbr0; create_networks.ml's host internal management network."""
    nets = client("network.get_all_records")
    eth0 = [v for v in nets.values() if v["bridge"] == "xenbr0"]
    assert [n["name_label"] for n in eth0] == ["Pool-wide network associated with eth0"]
    himn = [v for v in nets.values() if v["bridge"] == "xenapi"]
    assert len(himn) == 1 and himn[0]["name_label"] == "Host internal management network"
    assert himn[0]["other_config"]["is_host_internal_management_network"] == "true"
    assert himn[0]["name_description"].startswith("Network on which guests will be assigned")
    for rec in client("host.get_all_records").values():
        (pif,) = [client("PIF.get_record", p) for p in rec["PIFs"]]
        assert pif["management"] is True and pif["device"] == "eth0"
        assert pif["currently_attached"] is True and pif["physical"] is True
        assert pif["IP"] == rec["address"] and pif["ip_configuration_mode"] == "Static"
        assert client("network.get_bridge", pif["network"]) == "xenbr0"
        assert pif["properties"] == {"gro": "on"}
        assert client("PIF_metrics.get_carrier", pif["metrics"]) is True


def test_control_domain(client):
    """create_misc.ml create_domain_zero_record and its consoles and metrics."""
    for host, rec in client("host.get_all_records").items():
        dom0 = client("VM.get_record", rec["control_domain"])
        assert dom0["is_control_domain"] is True and dom0["power_state"] == "Running"
        assert dom0["name_label"] == f"Control domain on host: {rec['hostname']}"
        assert dom0["name_description"] == ("The domain which manages physical devices and "
                                            "manages other domains")
        assert dom0["resident_on"] == host and dom0["affinity"] == host
        assert int(dom0["domid"]) == 0 and dom0["domain_type"] == "pv"
        assert dom0["actions_after_reboot"] == "destroy" and dom0["actions_after_crash"] == "destroy"
        consoles = [client("console.get_record", c) for c in dom0["consoles"]]
        assert sorted(c["protocol"] for c in consoles) == ["rfb", "vt100"]
        for c in consoles:
            ref = next(r for r in dom0["consoles"] if client("console.get_location", r) ==
                       c["location"])
            assert c["location"] == f"https://{rec['address']}/console?ref={ref}"
        metrics = client("VM_metrics.get_record", dom0["metrics"])
        assert metrics["current_domain_type"] == "pv"
        assert metrics["start_time"].value.startswith("19700101") if hasattr(
            metrics["start_time"], "value") else metrics["start_time"].startswith("19700101")
        assert int(metrics["VCPUs_number"]) == int(dom0["VCPUs_max"])


# -- storage -------------------------------------------------------------------
def test_removable_storage_and_dvd_drives(client):
    """SM's storage-init create_udev_srs."""
    hosts = client("host.get_all")
    for name, content, sm_type, location, key, desc in (
            ("Removable storage", "disk", "block", "/dev/xapi/block", "local-hotplug-disk", ""),
            ("DVD drives", "iso", "cd", "/dev/xapi/cd", "local-hotplug-cd", "Physical DVD drives")):
        found = srs_named(client, name)
        assert len(found) == len(hosts)
        for _, rec in found:
            assert rec["type"] == "udev" and rec["content_type"] == content
            assert rec["sm_config"] == {"type": sm_type} and rec["name_description"] == desc
            assert rec["other_config"]["i18n-key"] == key
            assert rec["other_config"]["i18n-original-value-name_label"] == name
            if desc:
                assert rec["other_config"]["i18n-original-value-name_description"] == desc
            (pbd,) = rec["PBDs"]
            assert client("PBD.get_device_config", pbd) == {"location": location}


def test_tools_sr_is_one_shared_iso_sr(client):
    """dbsync_master.ml create_tools_sr: shared, is_tools_sr, a PBD per host."""
    (ref, rec), = [(r, v) for r, v in client("SR.get_all_records").items()
                   if v["other_config"].get("xenserver_tools_sr") == "true"]
    assert rec["name_label"] == "XenServer Tools" and rec["name_description"] == "XenServer Tools ISOs"
    assert rec["type"] == "iso" and rec["content_type"] == "iso" and rec["shared"] is True
    assert rec["is_tools_sr"] is True
    assert rec["other_config"]["i18n-key"] == "xenserver-tools"
    assert rec["other_config"]["xensource_internal"] == "true"
    pbd_hosts = sorted(client("PBD.get_host", p) for p in rec["PBDs"])
    assert pbd_hosts == sorted(client("host.get_all"))
    for p in rec["PBDs"]:
        assert client("PBD.get_device_config", p) == {"path": "/opt/xensource/packages/iso",
                                                      "location": "/opt/xensource/packages/iso"}


def test_pbds_name_their_storage_driver_domain(client):
    for rec in client("PBD.get_all_records").values():
        dom0 = client("host.get_control_domain", rec["host"])
        assert rec["other_config"]["storage_driver_domain"] == dom0


# -- templates -----------------------------------------------------------------
def test_default_templates_are_the_real_list(client):
    """guest-templates-json: one template per JSON file with a uuid, uuids kept."""
    templates = {v["name_label"]: v for v in client("VM.get_all_records").values()
                 if v["is_a_template"] and v["is_default_template"]}
    assert len(templates) >= 40
    for name in ("Other install media", "Debian Bookworm 12", "Ubuntu Noble Numbat 24.04",
                 "Windows 11", "Windows Server 2022 (64-bit)", "Rocky Linux 9"):
        assert name in templates, name
    debian = templates["Debian Bookworm 12"]
    assert debian["uuid"] == "07d91aaa-43f7-430a-bf84-0edb6714df0f"
    assert debian["reference_label"] == "debian-12"
    assert debian["other_config"]["install-methods"] == "cdrom,nfs,http,ftp"
    assert debian["other_config"]["linux_template"] == "true"
    assert "default_template" not in debian["other_config"]  # import.ml drops it
    assert re.fullmatch(r"[0-9a-f-]{36}", debian["other_config"]["mac_seed"])
    assert debian["HVM_boot_policy"] == "BIOS order"
    assert debian["HVM_boot_params"] == {"firmware": "uefi", "order": "cdn"}
    assert debian["platform"]["device_id"] == "0001" and debian["platform"]["secureboot"] == "auto"
    assert '<restriction field="vcpus-max" max="64"/>' in debian["recommendations"]
    assert int(debian["memory_static_min"]) == 1 << 30
    disks_xml = debian["other_config"]["disks"]
    assert re.fullmatch(r'<provision><disk size="10737418240" sr="" bootable="true" '
                        r'type="system" device="0"/></provision>', disks_xml)
    win = templates["Windows 11"]
    assert win["platform"]["viridian"] == "true" and "install-methods" in win["other_config"]


def test_default_templates_refuse_start_and_destroy(client):
    tmpl = client("VM.get_by_name_label", "Windows 11")[0]
    assert fails(client, "VM.start", tmpl, False, False) == ["VM_IS_TEMPLATE", tmpl, "start"]
    assert fails(client, "VM.destroy", tmpl)[0] == "VM_IS_TEMPLATE"
