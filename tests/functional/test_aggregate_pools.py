"""Host aggregates with hypervisor_pool=true become XAPI pools (pools.py's reconciler).

Two nova-computes, each on a standalone simulated host (its own pool): an
aggregate made and filled through Nova's API makes the first host's XAPI
host the master and joins the second with pool.join; taking the second out
of the aggregate ejects it again.
"""
from __future__ import annotations

import time

from nova import context as nova_context

from nova_xenapi.testing import nova_stack as base


class AggregatePoolTest(base.XenAPIFunctionalBase):
    STANDALONE_HOSTS = 1

    def setUp(self) -> None:
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")
        self.ctx = nova_context.get_admin_context()

    def _reconcile(self, *computes: str) -> None:
        for name in computes:
            drv = self.computes[name].manager.driver
            drv.pool_reconciler(name).reconcile(self.ctx)

    def _aggregate(self) -> dict:
        agg = self.admin_api.post_aggregate({"aggregate": {"name": "pool-a"}})
        self.admin_api.post_aggregate_action(agg["id"], {"set_metadata": {"metadata": {
            "hypervisor_pool": "true", "operational_state": "created"}}})
        return agg

    def _metadata(self, agg: dict) -> dict:
        return self.admin_api.api_get(f"/os-aggregates/{agg['id']}").body["aggregate"]["metadata"]

    def _add(self, agg: dict, host: str) -> None:
        self.admin_api.post_aggregate_action(agg["id"], {"add_host": {"host": host}})

    def test_an_aggregate_becomes_a_pool_and_a_removed_host_is_ejected(self):
        agg = self._aggregate()
        self._add(agg, "compute")
        self._reconcile("compute")
        meta = self._metadata(agg)
        self.assertEqual(("compute", "active"), (meta["master_compute"], meta["operational_state"]))
        self.assertEqual("127.0.0.1", meta["master_address"])
        self._add(agg, "compute2")
        self._reconcile("compute2")
        meta = self._metadata(agg)
        self.assertEqual("active", meta["operational_state"], meta)
        hosts = {self.api_x.host.get_address(h) for h in self.api_x.host.get_all()}
        self.assertEqual({"127.0.0.1", "127.0.0.2"}, hosts)  # one pool now
        member = self.computes["compute2"].manager.driver.session
        self.assertEqual(meta["compute2"], member.host_uuid)
        self.assertEqual("127.0.0.2", self.api_x.host.get_address(member.host_ref))
        self.assertEqual(["xs-host-2"], self.computes["compute2"].manager.driver.get_available_nodes())

        self.admin_api.post_aggregate_action(agg["id"], {"remove_host": {"host": "compute2"}})
        self._reconcile("compute")
        self.assertEqual({"127.0.0.1"}, {self.api_x.host.get_address(h)
                                         for h in self.api_x.host.get_all()})
        self.assertNotIn("compute2", self._metadata(agg))
        self.assertEqual(2, len(self.sim.backends))  # the ejected host is a pool of its own again

    def test_a_host_running_other_vms_is_not_joined(self):
        agg = self._aggregate()
        self._add(agg, "compute")
        self._reconcile("compute")
        x = base.XenAPI.Session(self.sim.url_of("127.0.0.2"))
        x.xenapi.login_with_password("root", base.PASSWORD, "2.21", "check")
        self.addCleanup(x.xenapi.session.logout)
        busy = base.diskless_vm(x.xenapi, "busy")
        x.xenapi.VM.start(busy, False, False)
        self._add(agg, "compute2")
        self._reconcile("compute2")
        meta = self._metadata(agg)
        self.assertEqual("error", meta["operational_state"])
        self.assertIn("besides nova-compute", meta["operational_error"])
        self.assertEqual(["127.0.0.1"], [self.api_x.host.get_address(h)
                                         for h in self.api_x.host.get_all()])


class AggregatePoolReconcilerThreadTest(AggregatePoolTest):
    """The same through each compute's own reconciler thread: nothing here calls it, and the
    ejected host's nova-compute goes on without a restart."""
    POOL_RECONCILE_INTERVAL = 1

    def _until(self, what: str, check, seconds: float = 60.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        self.fail(f"no {what} after {seconds:.0f}s")

    def _reconcile(self, *computes: str) -> None:
        raise AssertionError("the reconciler threads must do it")

    def test_an_aggregate_becomes_a_pool_and_a_removed_host_is_ejected(self):
        agg = self._aggregate()
        self._add(agg, "compute")
        self._add(agg, "compute2")
        self._until("two-host pool", lambda: len(self.api_x.host.get_all()) == 2
                    and self._metadata(agg).get("compute2"))
        self.assertEqual("active", self._metadata(agg)["operational_state"], self._metadata(agg))
        member = self.computes["compute2"].manager.driver.session
        # its calls go to the master (from its next call on, if the join's answer came first)
        self._until("compute2's session at the master", lambda: member.url == self.sim.url)

        self.admin_api.post_aggregate_action(agg["id"], {"remove_host": {"host": "compute2"}})
        self._until("eject", lambda: len(self.api_x.host.get_all()) == 1)
        self._until("rehomed session", lambda: member.url == self.sim.url_of("127.0.0.2"))
        self.assertNotIn("compute2", self._metadata(agg))
        # compute2 was not restarted: it boots a server on its host, now a pool of its own
        server = self._create_server(image_uuid=self.make_image(base.image_data(5)),
                                     networks="none", az="nova:compute2")
        self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
        x = base.XenAPI.Session(self.sim.url_of("127.0.0.2"))
        x.xenapi.login_with_password("root", base.PASSWORD, "2.21", "check")
        self.addCleanup(x.xenapi.session.logout)
        (ref,) = x.xenapi.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])
        self.assertEqual("Running", x.xenapi.VM.get_power_state(ref))
        self._delete_server(server)
        self.assertEqual([], x.xenapi.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"]))

    def test_a_host_running_other_vms_is_not_joined(self):
        agg = self._aggregate()
        self._add(agg, "compute")
        self._until("master", lambda: self._metadata(agg).get("master_compute"))
        x = base.XenAPI.Session(self.sim.url_of("127.0.0.2"))
        x.xenapi.login_with_password("root", base.PASSWORD, "2.21", "check")
        self.addCleanup(x.xenapi.session.logout)
        x.xenapi.VM.start(base.diskless_vm(x.xenapi, "busy"), False, False)
        self._add(agg, "compute2")
        meta = self._until("refusal", lambda: (m := self._metadata(agg))["operational_state"]
                           == "error" and m)
        self.assertIn("besides nova-compute", meta["operational_error"])
        self.assertEqual(1, len(self.api_x.host.get_all()))
