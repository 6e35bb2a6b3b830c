"""Disk I/O from the flavor through Nova's API (``nova_xenapi/disk_qos.py``).

xen-api's xapi_xenops.ml reads a VBD's ``qos_algorithm_type: ionice`` (with
``sched`` and ``class``) and nothing else for disks: a flavor's
``xenapi:disk_io_priority`` becomes that on the server's own disks, and
``quota:disk_*`` limits, which XAPI has no means for, are refused.
"""

from __future__ import annotations

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base


class DiskQoSTest(base.XenAPIFunctionalBase):
    # RPC casts stay casts: a compute's refusal of a resize reaches the server's actions
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        self.image = self.make_image(base.image_data())

    def qos(self, server: dict) -> dict[str, tuple[str, dict]]:
        out = {}
        for vbd in self.vm_of(server)["VBDs"]:
            rec = self.api_x.VBD.get_record(vbd)
            out[rec["userdevice"]] = (rec["qos_algorithm_type"], rec["qos_algorithm_params"])
        return out

    def test_the_flavors_priority_reaches_the_servers_own_disks(self):
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=1, swap=16,
                                     name="low-io",
                                     extra_spec={"xenapi:disk_io_priority": "low"})
        server = self._create_server(image_uuid=self.image, flavor_id=flavor, networks="none")
        low = ("ionice", {"sched": "best-effort", "class": "low"})
        self.assertEqual({"0": low, "1": low, "2": low}, self.qos(server))
        self._delete_server(server)
        idle = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0, name="idle-io",
                                   extra_spec={"xenapi:disk_io_priority": "idle"})
        body = self._build_server(image_uuid=self.image, flavor_id=idle, networks="none")
        body["config_drive"] = True
        server = self._wait_for_state_change(self.api.post_server({"server": body}), "ACTIVE")
        self.assertEqual({"0": ("ionice", {"sched": "idle"}), "3": ("", {})}, self.qos(server))
        self._delete_server(server)
        self.assertHostClean()

    def test_a_resize_to_limits_is_refused_and_the_server_keeps_running(self):
        self.flags(allow_resize_to_same_host=True)
        small = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0, name="small")
        limited = self._create_flavor(memory_mb=1024, vcpu=1, disk=1, ephemeral=0,
                                      name="limited", extra_spec={"quota:disk_write_iops_sec": "9"})
        server = self._create_server(image_uuid=self.image, flavor_id=small, networks="none")
        self.api.post_server_action(server["id"], {"resize": {"flavorRef": limited}})
        event = self._wait_for_instance_action_event(server, "resize", "compute_resize_instance",
                                                     "Error")
        self.assertIn("quota:disk_write_iops_sec", str(event))
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual(512, server["flavor"]["ram"])
        self.assertEqual("Running", self.vm_of(server)["power_state"])
        self._delete_server(server)
        self.assertHostClean()

    def test_nova_api_refuses_a_priority_xapi_does_not_know(self):
        self.api.microversion = "2.86"  # flavor extra specs validated by the namespace's validators
        flavor = self._create_flavor(name="plain", disk=1, ephemeral=0)
        e = self.assertRaises(client.OpenStackApiException, self.admin_api.post_extra_spec,
                              flavor, {"extra_specs": {"xenapi:disk_io_priority": "urgent"}})
        self.assertEqual(400, e.response.status_code)
        self.assertIn("not one of", str(e))

    def test_byte_and_iops_limits_are_refused_and_nothing_is_left(self):
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0, name="limited",
                                     extra_spec={"quota:disk_read_bytes_sec": "10485760",
                                                 "quota:disk_total_iops_sec": "500"})
        server = self._create_server(image_uuid=self.image, flavor_id=flavor, networks="none",
                                     expected_state="ERROR")
        self.assertIn("quota:disk_read_bytes_sec, quota:disk_total_iops_sec",
                      server["fault"]["message"])
        self._delete_server(server)
        self.assertHostClean()
