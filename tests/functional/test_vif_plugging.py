"""A new server is ACTIVE only once Neutron says its ports are plugged (network-vif-plugged).

Nova's Neutron fixture marks its ports ACTIVE, so Nova expects no event; here the port is
DOWN, as a real Neutron's is until its agent wires the VIF that appears in dom0's switch
when the VM starts, and the test plays Neutron by posting the event through Nova's API.
"""

from __future__ import annotations

import time

from nova_xenapi.testing import nova_stack as base


class VifPluggingTest(base.XenAPIFunctionalBase):

    def setUp(self):
        super().setUp()
        self.port = self.neutron.port_1
        self.neutron._ports[self.port["id"]]["status"] = "DOWN"
        self.image = self.make_image(base.image_data())

    def _boot(self, **kwargs):
        return self._create_server(image_uuid=self.image, networks=[{"port": self.port["id"]}],
                                   **kwargs)

    def _vm_running(self, server_id: str) -> bool:
        return any(r["power_state"] == "Running" and r["other_config"].get("nova_uuid") == server_id
                   for r in self.api_x.VM.get_all_records().values())

    def test_the_server_is_active_only_after_neutron_reports_its_port_plugged(self):
        self.flags(vif_plugging_timeout=60, vif_plugging_is_fatal=True)
        body = self._build_server(image_uuid=self.image, networks=[{"port": self.port["id"]}])
        server = self.api.post_server({"server": body})
        deadline = time.monotonic() + 30
        while not self._vm_running(server["id"]):
            self.assertLess(time.monotonic(), deadline, "the VM never started")
            time.sleep(0.1)
        time.sleep(0.5)
        self.assertEqual("BUILD", self.api.get_server(server["id"])["status"],
                         "ACTIVE before Neutron reported the port plugged")
        self.api.api_post("/os-server-external-events", {"events": [{
            "name": "network-vif-plugged", "server_uuid": server["id"], "tag": self.port["id"],
            "status": "completed"}]})
        server = self._wait_for_state_change(server, "ACTIVE")
        self._delete_server(server)
        self.assertHostClean()

    def test_a_port_neutron_never_plugs_fails_the_boot_and_leaves_nothing(self):
        self.flags(vif_plugging_timeout=2, vif_plugging_is_fatal=True)
        server = self._boot(expected_state="ERROR")
        # the compute manager turns VirtualInterfaceCreateException into this, as for libvirt
        self.assertIn("Failed to allocate the network(s), not rescheduling",
                      self.api.get_server(server["id"])["fault"]["message"])
        self.assertHostClean()
        self._delete_server(server)

    def test_when_not_fatal_the_boot_goes_on_without_the_event(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
        server = self._boot()
        self.assertTrue(self._vm_running(server["id"]))
        self._delete_server(server)
        self.assertHostClean()
