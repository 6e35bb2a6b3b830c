"""Servers driven through Nova's compute API onto xapisim, checked on the host afterwards."""

from __future__ import annotations

import os
import subprocess
import time

from nova import conf as nova_conf
from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base


class ServerLifecycleTest(base.XenAPIFunctionalBase):

    def test_boot_actions_and_delete_leave_nothing(self):
        image = self.make_image(base.image_data())
        server = self._create_server(image_uuid=image, networks="none")
        rec = self.vm_of(server)
        self.assertEqual("Running", rec["power_state"])
        self.assertEqual(server["id"], rec["other_config"]["nova_uuid"])
        self.assertEqual("BIOS order", rec["HVM_boot_policy"])

        server = self._reboot_server(server)
        server = self._reboot_server(server, hard=True)
        self._stop_server(server)
        self.assertEqual("Halted", self.vm_of(server)["power_state"])
        self._start_server(server)
        server = self._wait_for_state_change(server, "ACTIVE")
        self.api.post_server_action(server["id"], {"pause": {}})
        server = self._wait_for_state_change(server, "PAUSED")
        self.assertEqual("Paused", self.vm_of(server)["power_state"])
        self.api.post_server_action(server["id"], {"unpause": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        server = self._suspend_server(server)
        self.assertEqual("Suspended", self.vm_of(server)["power_state"])
        server = self._resume_server(server)
        self.assertEqual("Running", self.vm_of(server)["power_state"])

        self._delete_server(server)
        self.assertHostClean()

    def test_root_disk_holds_the_image_bytes(self):
        data = base.image_data(11)
        server = self._create_server(image_uuid=self.make_image(data), networks="none")
        vbd, vdi = self.disk(server)
        self.assertEqual(1024 ** 3, int(vdi["virtual_size"]))
        self.assertEqual(data, self.read_vdi(vbd["VDI"], len(data)))
        self._delete_server(server)
        self.assertHostClean()

    def test_swap_ephemeral_config_drive_and_vifs(self):
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=1, swap=128)
        body = self._build_server(image_uuid=self.make_image(base.image_data()), flavor_id=flavor,
                                  networks=[{"port": self.neutron.port_1["id"]}])
        body["config_drive"] = True
        server = self._wait_for_state_change(self.api.post_server({"server": body}), "ACTIVE")
        rec = self.vm_of(server)
        devices = {}
        for vbd in rec["VBDs"]:
            v = self.api_x.VBD.get_record(vbd)
            devices[v["userdevice"]] = (v, self.api_x.VDI.get_record(v["VDI"]))
        self.assertEqual(["0", "1", "2", "3"], sorted(devices))
        self.assertEqual(128 * 1024 ** 2, int(devices["1"][1]["virtual_size"]))
        self.assertEqual(1024 ** 3, int(devices["2"][1]["virtual_size"]))
        swap = self.read_vdi(devices["1"][0]["VDI"], 4096)
        self.assertEqual(b"SWAPSPACE2", swap[4086:4096], "swap is formatted")
        ext = self.read_vdi(devices["2"][0]["VDI"], 2048)
        self.assertEqual(b"\x53\xef", ext[1080:1082], "ephemeral disk holds an ext filesystem")
        self.assertIn(b"ephemeral0", ext[1024:1200], "labelled as the old driver did")
        self.assertEqual("RO", devices["3"][0]["mode"])
        cd = self.read_vdi(devices["3"][0]["VDI"], 64 * 1024)
        self.assertEqual(b"CD001", cd[32769:32774], "config drive is an ISO 9660 image")
        self.assertIn(b"config-2", cd)
        vifs = [self.api_x.VIF.get_record(v) for v in rec["VIFs"]]
        self.assertEqual([self.neutron.port_1["mac_address"]], [v["MAC"] for v in vifs])
        self.assertEqual(self.neutron.port_1["id"], vifs[0]["other_config"]["nicira-iface-id"])
        self._delete_server(server)
        self.assertHostClean()

    def test_snapshot_uploads_and_boots_again(self):
        data = base.image_data(5)
        server = self._create_server(image_uuid=self.make_image(data), networks="none")
        snap = self.api.post_server_action(server["id"], {"createImage": {"name": "snap-1"}})["image_id"]
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        meta = self.glance.show(None, snap)
        self.assertEqual("vhd", meta["disk_format"])
        uploaded = self.glance._imagedata[snap]
        self.assertEqual(b"conectix", uploaded[:8], "snapshot is a real VHD")
        again = self._create_server(image_uuid=snap, networks="none")
        self.assertEqual(data, self.read_vdi(self.disk(again)[0]["VDI"], len(data)))
        self._delete_server(server)
        self._delete_server(again)
        self.assertHostClean()

    def test_rescue_and_unrescue(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        self.api.post_server_action(server["id"], {"rescue": {}})
        server = self._wait_for_state_change(server, "RESCUE")
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        rescue = self.api_x.VM.get_by_name_label(name + "-rescue")
        self.assertEqual(1, len(rescue))
        self.assertEqual("Running", self.api_x.VM.get_power_state(rescue[0]))
        self.assertEqual("Halted", self.vm_of(server)["power_state"])
        self.api.post_server_action(server["id"], {"unrescue": None})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual([], self.api_x.VM.get_by_name_label(name + "-rescue"))
        self.assertEqual("Running", self.vm_of(server)["power_state"])
        self._delete_server(server)
        self.assertHostClean()

    def test_console_output_comes_from_the_dom0_plugin(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        out = self.api.post_server_action(server["id"], {"os-getConsoleOutput": {"length": 5}})
        self.assertIn(f"{server['OS-EXT-SRV-ATTR:instance_name']} login:", out["output"])
        self._delete_server(server)
        self.assertHostClean()

    def test_guest_shutdown_reaches_nova_as_a_lifecycle_event(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        ref = self.api_x.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])[0]
        self.api_x.VM.hard_shutdown(ref)  # the guest powers itself off, behind Nova's back
        self._wait_for_state_change(server, "SHUTOFF")
        self._delete_server(server)
        self.assertHostClean()


class ServerFailureTest(base.XenAPIFunctionalBase):

    def test_image_larger_than_flavor_disk_fails_clean(self):
        # a small qcow2 file whose virtual disk (2 GiB) does not fit the flavor's 1 GiB:
        # only the driver can see that, from the image's header
        flavor = self._create_flavor(memory_mb=256, vcpu=1, disk=1, ephemeral=0)
        server = self._create_server(image_uuid=self.make_image_bigger_than(1), flavor_id=flavor,
                                     networks="none", expected_state="ERROR")
        fault = self.api.get_server(server["id"])["fault"]["message"]
        self.assertIn("Flavor's disk is too small for requested image", fault)
        self.assertHostClean()
        self._delete_server(server)

    def test_failed_vm_start_leaves_nothing(self):
        self.sim.faults.add("VM.start_on", "error",
                            error=["HOST_NOT_ENOUGH_FREE_MEMORY", "1073741824", "0"])
        image = self.make_image(base.image_data())
        server = self._create_server(image_uuid=image, networks="none", expected_state="ERROR")
        # with one host Nova's fault says the retries ran out; the driver's error is in the log
        self.assertIn("HOST_NOT_ENOUGH_FREE_MEMORY", self.stdlog.logger.output)
        self.assertHostClean()
        self._delete_server(server)

    def test_lost_connection_midway_leaves_nothing(self):
        # xmlrpc.client silently re-sends once on a dropped keep-alive connection: drop twice
        self.sim.faults.add("VBD.create", "drop", count=2)
        server = self._create_server(image_uuid=self.make_image(base.image_data()),
                                     networks="none", expected_state="ERROR")
        self.assertHostClean()
        self._delete_server(server)


class OperationFailureTest(base.XenAPIFunctionalBase):
    """A failed XAPI call or a lost connection midway ends in a clean state, not a hang."""

    def _objects(self) -> tuple[set, set]:
        return set(self.api_x.VM.get_all()), set(self.api_x.VDI.get_all())

    def test_failed_snapshot_upload_removes_the_snapshot(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        before = self._objects()
        # VM.snapshot succeeds; the export's task.create then fails, after the snapshot exists
        self.sim.faults.add("task.create", "error", error=["INTERNAL_ERROR", "injected"])
        self.api.post_server_action(server["id"], {"createImage": {"name": "broken"}})
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None,
                                                          "status": "ACTIVE"})
        self.assertEqual(before, self._objects())
        self.assertEqual([], self.api_x.task.get_all())
        self._delete_server(server)
        self.assertHostClean()

    def test_failed_rescue_leaves_no_rescue_vm_or_disk(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        before = self._objects()
        self.sim.faults.add("VM.start_on", "error", error=["HOST_NOT_ENOUGH_FREE_MEMORY", "1", "0"])
        with self.assertRaisesRegex(client.OpenStackApiException, "cannot be rescued.*HOST_NOT_ENOUGH"):
            self.api.post_server_action(server["id"], {"rescue": {}})
        # Nova marks the server ERROR after a failed rescue; the host is as it was before
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None,
                                                          "status": "ERROR"})
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        self.assertEqual([], self.api_x.VM.get_by_name_label(name + "-rescue"))
        # Nova powers the instance off before asking the driver to rescue it
        self.assertEqual("Halted", self.vm_of(server)["power_state"])
        self.assertEqual(before, self._objects())
        self._delete_server(server)
        self.assertHostClean()

    def test_connection_lost_during_reboot_is_an_error_not_a_hang(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        self.sim.faults.add("VM.hard_reboot", "drop", count=2)
        self.api.post_server_action(server["id"], {"reboot": {"type": "HARD"}})
        # Nova keeps a server whose reboot failed but which still runs ACTIVE, task cleared
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None,
                                                          "status": "ACTIVE"})
        self.assertIn("Reboot failed but instance is running", self.stdlog.logger.output)
        self.assertEqual(2, sum(f["call"].endswith("VM.hard_reboot") for f in self.sim.faults.fired))
        self.assertEqual("Running", self.vm_of(server)["power_state"])
        self._delete_server(server)
        self.assertHostClean()


class HostResourcesTest(base.XenAPIFunctionalBase):

    def test_inventory_reserves_dom0_and_reports_the_sr_and_image_traits(self):
        x = self.api_x
        host = x.host.get_all()[0]
        rp = self.admin_api.api_get("/os-hypervisors").body["hypervisors"][0]["id"]
        self.assertEqual(x.host.get_uuid(host), rp, "the resource provider is the XAPI host")
        inv = self._get_provider_inventory(rp)
        dom0 = x.VM.get_record(x.host.get_control_domain(host))
        total = int(x.host_metrics.get_memory_total(x.host.get_metrics(host))) >> 20
        self.assertEqual(total, inv["MEMORY_MB"]["total"])
        # dom0's memory on top of what the operator reserves ([DEFAULT] reserved_host_memory_mb)
        self.assertEqual((int(dom0["memory_target"]) >> 20) + nova_conf.CONF.reserved_host_memory_mb,
                         inv["MEMORY_MB"]["reserved"])
        self.assertEqual(len(x.host.get_host_CPUs(host)), inv["VCPU"]["total"])
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        self.assertEqual(int(x.SR.get_physical_size(sr)) >> 30, inv["DISK_GB"]["total"])
        traits = set(self._get_provider_traits(rp))
        self.assertLessEqual({"COMPUTE_IMAGE_TYPE_VHD", "COMPUTE_IMAGE_TYPE_RAW",
                              "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_AMI",
                              "COMPUTE_SECURITY_UEFI_SECURE_BOOT"}, traits)
        self.assertNotIn("COMPUTE_IMAGE_TYPE_ISO", traits)

    def test_uptime_comes_from_the_host(self):
        hypervisor = self.admin_api.api_get("/os-hypervisors/detail").body["hypervisors"][0]
        shown = self.admin_api.api_get(f"/os-hypervisors/{hypervisor['id']}").body["hypervisor"]
        # dom0's own uptime output, through the xenhost.py plugin (since 2.88 part of show)
        self.assertRegex(shown["uptime"], r"up .*load average")
        self.assertEqual("XenServer", hypervisor["hypervisor_type"])
        self.assertEqual(self.api_x.host.get_hostname(self.api_x.host.get_all()[0]),
                         hypervisor["hypervisor_hostname"])


class ActionFailureTest(base.XenAPIFunctionalBase):
    """Each power action whose XAPI call fails ends in a settled state quickly, with nothing leaked."""

    ACTIONS = [  # (API body, the XAPI messages that fail, the state the server was in)
        ({"os-stop": None}, ("VM.clean_shutdown", "VM.hard_shutdown"), "ACTIVE"),
        ({"pause": None}, ("VM.pause",), "ACTIVE"),
        ({"suspend": None}, ("VM.suspend",), "ACTIVE"),
        ({"os-start": None}, ("VM.start_on",), "SHUTOFF"),
        ({"unpause": None}, ("VM.unpause",), "PAUSED"),
        ({"resume": None}, ("VM.resume_on",), "SUSPENDED"),
    ]
    SETUP = {"SHUTOFF": {"os-stop": None}, "PAUSED": {"pause": None}, "SUSPENDED": {"suspend": None}}

    def test_failed_power_actions_settle(self):
        image = self.make_image(base.image_data())
        for body, messages, state in self.ACTIONS:
            with self.subTest(action=next(iter(body))):
                server = self._create_server(image_uuid=image, networks="none")
                if state in self.SETUP:
                    server = self.action(server, self.SETUP[state], state)
                vms_before = set(self.api_x.VM.get_all())
                for message in messages:
                    self.sim.faults.add(message, "error", error=["INTERNAL_ERROR", "injected"])
                try:
                    self.api.post_server_action(server["id"], body)
                except client.OpenStackApiException as e:  # casts run as calls in these tests
                    self.assertIn("XenAPIError", str(e))
                server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
                self.assertEqual(len(messages), len(self.sim.faults.fired), "the failing call was made")
                self.sim.faults.fired.clear()
                self.assertIn(server["status"], (state, "ERROR"))
                self.assertEqual(vms_before, set(self.api_x.VM.get_all()))
                self.assertEqual([], self.api_x.task.get_all())
                self._delete_server(server)
        self.assertHostClean()

    def action(self, server, body, state):
        self.api.post_server_action(server["id"], body)
        return self._wait_for_state_change(server, state)

    def test_uefi_secure_boot_image_properties_reach_the_vm(self):
        image = self.make_image(base.image_data(), hw_firmware_type="uefi", os_secure_boot="required")
        server = self._create_server(image_uuid=image, networks="none")
        rec = self.vm_of(server)
        self.assertEqual("uefi", rec["HVM_boot_params"]["firmware"])
        self.assertEqual("true", rec["platform"]["secureboot"])
        self._delete_server(server)
        self.assertHostClean()


class LocalDevHandlerTest(base.XenAPIFunctionalBase):
    """image_handler = vdi_local_dev: images written through this compute VM's block device."""

    IMAGE_HANDLER = "vdi_local_dev"

    def test_boot_raw_and_qcow2_snapshot_and_boot_again(self):
        data = base.image_data(13)
        server = self._create_server(image_uuid=self.make_image(data), networks="none")
        self.assertEqual(data, self.read_vdi(self.disk(server)[0]["VDI"], len(data)))
        qcow = os.path.join(self.state_dir, "img.qcow2")
        raw = os.path.join(self.state_dir, "img.raw")
        with open(raw, "wb") as f:
            f.write(data)
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow], check=True)
        with open(qcow, "rb") as f:
            from_qcow = self._create_server(image_uuid=self.make_image(f.read(), "qcow2"),
                                            networks="none")
        self.assertEqual(data, self.read_vdi(self.disk(from_qcow)[0]["VDI"], len(data)))
        snap = self.api.post_server_action(server["id"], {"createImage": {"name": "s"}})["image_id"]
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self.assertEqual("vhd", self.glance.show(None, snap)["disk_format"])
        again = self._create_server(image_uuid=snap, networks="none")
        self.assertEqual(data, self.read_vdi(self.disk(again)[0]["VDI"], len(data)))
        for s in (server, from_qcow, again):
            self._delete_server(s)
        self.assertHostClean()
        self.assertEqual([], os.listdir(os.path.join(self.device_dir, self.xapi.xenapi.VM.get_uuid(
            self.compute_vm))), "every device was unplugged")

    def test_a_failed_download_unplugs_and_removes_everything(self):
        flavor = self._create_flavor(memory_mb=256, vcpu=1, disk=1, ephemeral=0)
        server = self._create_server(image_uuid=self.make_image_bigger_than(1), flavor_id=flavor,
                                     networks="none", expected_state="ERROR")
        self.assertIn("Flavor's disk is too small", self.api.get_server(server["id"])["fault"]["message"])
        self.assertHostClean()  # includes: no VBD left on the compute VM
        self._delete_server(server)


class ImageCacheTest(base.XenAPIFunctionalBase):
    """cache_images: one download per image and SR, root disks cloned from it."""

    def _downloads(self):
        counted = {"n": 0}
        real = self.glance.download

        def download(*args, **kwargs):
            counted["n"] += 1
            return real(*args, **kwargs)

        self.glance.download = download
        return counted

    def _cached(self):
        return [r for r in self.api_x.VDI.get_all_records().values()
                if "nova_image_cache" in r["other_config"]]

    def test_one_download_many_clones_and_the_cache_manager_cleans_up(self):
        data = base.image_data(17)
        image = self.make_image(data)
        downloads = self._downloads()
        small = self._create_flavor(memory_mb=256, vcpu=1, disk=1, ephemeral=0)
        big = self._create_flavor(memory_mb=256, vcpu=1, disk=2, ephemeral=0)
        first = self._create_server(image_uuid=image, flavor_id=small, networks="none")
        second = self._create_server(image_uuid=image, flavor_id=big, networks="none")
        self.assertEqual(1, downloads["n"])
        self.assertEqual(1, len(self._cached()))
        for server, gib in ((first, 1), (second, 2)):
            vbd, vdi = self.disk(server)
            self.assertEqual(gib * 1024 ** 3, int(vdi["virtual_size"]))
            self.assertEqual(data, self.read_vdi(vbd["VDI"], len(data)))
        self._delete_server(first)
        self._delete_server(second)
        self.assertHostClean()
        self.assertEqual(1, len(self._cached()), "deleting servers keeps the cached image")
        self.driver.manage_image_cache(None, [])
        self.assertEqual([], self._cached())

    def test_cache_images_none_downloads_every_time(self):
        self.flags(cache_images="none", group="xenserver")
        self.driver.host.cache_images = "none"
        image = self.make_image(base.image_data(19))
        downloads = self._downloads()
        for _ in range(2):
            self._delete_server(self._create_server(image_uuid=image, networks="none"))
        self.assertEqual(2, downloads["n"])
        self.assertEqual([], self._cached())
        self.assertHostClean()


class AmiTest(base.XenAPIFunctionalBase):
    """An AMI boots PV from its kernel and ramdisk, copied into dom0's /boot/guest by the plugin."""

    def test_ami_kernel_ramdisk_in_boot_guest_and_gone_after_delete(self):
        kernel, ramdisk = base.image_data(3, 1 << 20), base.image_data(5, 300 * 1024)
        kernel_id = self.make_image(kernel, "aki")
        ramdisk_id = self.make_image(ramdisk, "ari")
        image = self.make_image(base.image_data(7), "ami", kernel_id=kernel_id, ramdisk_id=ramdisk_id)
        server = self._create_server(image_uuid=image, networks="none")
        rec = self.vm_of(server)
        self.assertEqual("", rec["PV_bootloader"])
        dom0 = self.sim.backend.dom0_root(self.sim.backend.master_ref)
        for field, data in (("PV_kernel", kernel), ("PV_ramdisk", ramdisk)):
            self.assertTrue(rec[field].startswith("/boot/guest/"))
            with open(os.path.join(dom0, rec[field].lstrip("/")), "rb") as f:
                self.assertEqual(data, f.read())
        self.assertEqual([], [v for v in self.api_x.VBD.get_all_records().values()
                              if self.api_x.VM.get_is_control_domain(v["VM"])],
                         "nothing left plugged into dom0")
        self._delete_server(server)
        self.assertEqual([], os.listdir(os.path.join(dom0, "boot/guest")))
        self.assertHostClean()

    def test_a_kernel_over_the_size_limit_is_refused_cleanly(self):
        self.flags(max_kernel_ramdisk_size=1024, group="xenserver")
        self.driver.host.max_kernel_size = 1024
        kernel_id = self.make_image(base.image_data(3, 4096), "aki")
        image = self.make_image(base.image_data(7), "ami", kernel_id=kernel_id)
        server = self._create_server(image_uuid=image, networks="none", expected_state="ERROR")
        self.assertIn("max_kernel_ramdisk_size", self.api.get_server(server["id"])["fault"]["message"])
        self.assertHostClean()
        self._delete_server(server)


class InterfaceAndConsoleTest(base.XenAPIFunctionalBase):

    def test_attach_and_detach_an_interface_on_a_running_server(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        self.api.microversion = "2.49"  # tagged attach
        self.api.attach_interface(server["id"], {"interfaceAttachment": {
            "port_id": self.neutron.port_1["id"], "tag": "frontend"}})
        vifs = [self.api_x.VIF.get_record(v) for v in self.vm_of(server)["VIFs"]]
        mac = self.neutron.port_1["mac_address"]
        self.assertEqual([mac], [v["MAC"] for v in vifs])
        self.assertTrue(vifs[0]["currently_attached"], "hot-plugged into the running VM")
        self.assertEqual([(mac, ["frontend"])], self._nic_tags(server))
        self.api.detach_interface(server["id"], self.neutron.port_1["id"])
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self.assertEqual([], self.vm_of(server)["VIFs"])
        self.assertEqual([], self._nic_tags(server))
        self._delete_server(server)
        self.assertHostClean()

    def test_vnc_console_points_at_the_hosts_console_handler(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        console = self.api.api_post(f"/servers/{server['id']}/remote-consoles", {
            "remote_console": {"protocol": "vnc", "type": "novnc"}}).body["remote_console"]
        self.assertIn("token%3D", console["url"])
        info = self.driver.get_vnc_console(None, self._instance(server))
        self.assertEqual("127.0.0.1", info.host)
        self.assertTrue(info.internal_access_path.startswith("/console?"))
        self._delete_server(server)

    def _instance(self, server, *attrs):
        from nova import context, objects
        return objects.Instance.get_by_uuid(context.get_admin_context(), server["id"],
                                            expected_attrs=list(attrs))

    def _nic_tags(self, server) -> list:
        md = self._instance(server, "device_metadata").device_metadata
        return [(d.mac, d.tags) for d in (md.devices if md else []) if "mac" in d]


class HostPowerActionTest(base.XenAPIFunctionalBase):
    """os-hosts power actions (API microversions before 2.43) reach XAPI's host.reboot & co."""

    def test_reboot_stops_the_servers_and_brings_the_host_back_enabled(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        host = self.api_x.host.get_all()[0]
        booted = self.api_x.host.get_other_config(host)["boot_time"]
        time.sleep(1.1)  # boot_time has a resolution of one second
        self.admin_api.microversion = "2.42"
        body = self.admin_api.api_get("/os-hosts/compute/reboot").body
        self.assertEqual({"host": "compute", "power_action": "reboot"}, body)
        self.assertEqual("Halted", self.vm_of(server)["power_state"])
        self.assertTrue(self.api_x.host.get_enabled(host))
        self.assertNotEqual(booted, self.api_x.host.get_other_config(host)["boot_time"])
        self.admin_api.microversion = self.microversion
        server = self._wait_for_state_change(server, "SHUTOFF")  # Nova saw the VM stop
        self._delete_server(server)
        self.assertHostClean()

    def test_startup_without_a_power_on_mode_is_refused_and_the_host_stays_usable(self):
        self.admin_api.microversion = "2.42"
        exc = self.assertRaises(client.OpenStackApiException, self.admin_api.api_get,
                                "/os-hosts/compute/startup")
        self.assertIn(exc.response.status_code, (400, 500, 501))
        host = self.api_x.host.get_all()[0]
        self.assertTrue(self.api_x.host.get_enabled(host))
