"""One nova-compute per host of a pool: each manages the host its connection_url names.

The second compute's ``connection_url`` names a pool member, which answers
HOST_IS_SLAVE; its session then talks to the master, but its node, resources,
VMs, power events and plugins stay those of the member, also after the
master moves (``pool.designate_new_master``).  Disks go to each host's own
Local storage (``sr_matching_filter = other-config:i18n-key=local-storage``).
"""
from __future__ import annotations

import XenAPI

from nova_xenapi.testing import nova_stack as base


class PoolMembersTest(base.XenAPIFunctionalBase):
    POOL_HOSTS = 2
    SR_MATCHING_FILTER = "other-config:i18n-key=local-storage"

    def setUp(self) -> None:
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")
        x = self.api_x
        self.hosts = {x.host.get_address(h): h for h in x.host.get_all()}

    def _act(self, server: dict, body: dict, state: str) -> dict:
        self.api.post_server_action(server["id"], body)
        return self._wait_for_state_change(server, state)

    def _driver(self, name: str):
        return self.computes[name].manager.driver

    def _server_on(self, compute: str) -> dict:
        server = self._build_server(image_uuid=self.make_image(base.image_data()), networks="none",
                                    az=f"nova:{compute}")
        server = self.api.post_server({"server": server})
        return self._wait_for_state_change(server, "ACTIVE")

    def test_each_compute_is_its_own_host(self):
        hypervisors = {h["hypervisor_hostname"] for h in
                       self.admin_api.api_get("/os-hypervisors").body["hypervisors"]}
        self.assertEqual({"xs-host-1", "xs-host-2"}, hypervisors)
        member = self._driver("compute2").session
        self.assertEqual(self.hosts["127.0.0.2"], member.host_ref)
        self.assertEqual(self.sim.url, member.url)  # its calls go to the master
        stats = self._driver("compute2").get_available_resource("xs-host-2")
        sr = base.XenAPI.Session(self.sim.url)
        sr.xenapi.login_with_password("root", base.PASSWORD, "2.21", "check")
        self.addCleanup(sr.xenapi.session.logout)
        local2 = [r for r, v in sr.xenapi.SR.get_all_records().items()
                  if v["name_label"] == "Local storage" and
                  sr.xenapi.PBD.get_host(v["PBDs"][0]) == self.hosts["127.0.0.2"]][0]
        self.assertEqual(int(sr.xenapi.SR.get_physical_size(local2)) // (1 << 30),
                         stats["local_gb"])

    def test_a_server_on_the_member_runs_there_and_belongs_to_its_compute(self):
        server = self._server_on("compute2")
        self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
        vm = self.vm_of(server)
        self.assertEqual(self.hosts["127.0.0.2"], vm["resident_on"])
        root = self.api_x.VBD.get_VDI([v for v in vm["VBDs"]
                                      if self.api_x.VBD.get_userdevice(v) == "0"][0])
        pbds = self.api_x.SR.get_PBDs(self.api_x.VDI.get_SR(root))
        self.assertEqual([self.hosts["127.0.0.2"]], [self.api_x.PBD.get_host(p) for p in pbds])
        self.assertIn(server["id"], self._driver("compute2").list_instance_uuids())
        self.assertNotIn(server["id"], self._driver("compute").list_instance_uuids())
        # stop and start: it comes back on its own host
        server = self._act(server, {"os-stop": None}, "SHUTOFF")
        server = self._act(server, {"os-start": None}, "ACTIVE")
        self.assertEqual(self.hosts["127.0.0.2"], self.vm_of(server)["resident_on"])
        self._delete_server(server)
        self.assertHostClean()

    def test_the_member_keeps_its_host_when_the_master_moves(self):
        server = self._server_on("compute2")
        self.api_x.pool.designate_new_master(self.hosts["127.0.0.2"])
        new = XenAPI.Session(self.sim.url_of("127.0.0.2"))
        new.xenapi.login_with_password("root", base.PASSWORD, "2.21", "check")
        # give the pool its first master back for the harness's own sessions at the end
        self.addCleanup(new.xenapi.pool.designate_new_master, self.hosts["127.0.0.1"])
        # the old master now answers HOST_IS_SLAVE; both computes follow the new one
        server = self._act(server, {"reboot": {"type": "HARD"}}, "ACTIVE")
        vm = new.xenapi.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])[0]
        self.assertEqual(self.hosts["127.0.0.2"], new.xenapi.VM.get_resident_on(vm))
        self.assertEqual(["xs-host-2"], self._driver("compute2").get_available_nodes())
        self.assertEqual(["xs-host-1"], self._driver("compute").get_available_nodes())
        self.assertIn(server["id"], self._driver("compute2").list_instance_uuids())
