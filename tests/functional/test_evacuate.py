"""Evacuate through Nova's API: a server of a failed host comes back on another host.

With its disks on the pool's shared NFS SR, the VM record is reset from the
dead host (``VM.power_state_reset``) and started on the destination; with
the disks on the failed host's own storage, or on a host of another pool,
the evacuation is refused with a message that says why, and nothing is made.
"""
from __future__ import annotations

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base


class _EvacuateBase(base.XenAPIFunctionalBase):
    POOL_HOSTS = 2

    def setUp(self) -> None:
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")

    def _fail_compute2(self) -> None:
        """xs-host-2 crashes and its nova-compute is gone."""
        self.sim.crash_host("127.0.0.2")
        self.computes["compute2"].stop()
        service = self.admin_api.get_services(host="compute2", binary="nova-compute")[0]
        self.admin_api.put_service(service["id"], {"forced_down": True})

    def _server_on_compute2(self) -> tuple[dict, bytes]:
        data = base.image_data(5)
        server = self._create_server(image_uuid=self.make_image(data), networks="none",
                                     az="nova:compute2")
        return server, data


class SharedStorageEvacuateTest(_EvacuateBase):
    SHARED_SR = "nfs"

    def test_evacuate_starts_the_server_on_another_host_with_its_disks(self):
        server, data = self._server_on_compute2()
        before = self.vm_of(server)
        self._fail_compute2()
        server = self._evacuate_server(server, expected_host="compute", expected_state="ACTIVE")
        rec = self.vm_of(server)
        self.assertEqual(before["uuid"], rec["uuid"])  # the same VM, not a rebuild
        self.assertEqual("Running", rec["power_state"])
        self.assertEqual("127.0.0.1", self.api_x.host.get_address(rec["resident_on"]))
        self.assertEqual(rec["resident_on"], rec["affinity"])
        self.assertEqual(data, self.read_vdi(self.disk(server)[0]["VDI"], len(data)))
        self.assertIn(server["id"], self.driver.list_instance_uuids())


class LocalStorageEvacuateTest(_EvacuateBase):
    SR_MATCHING_FILTER = "other-config:i18n-key=local-storage"

    def test_evacuate_of_a_server_on_local_disks_is_refused_and_makes_nothing(self):
        server, _ = self._server_on_compute2()
        vms = set(self.api_x.VM.get_all())
        vdis = set(self.api_x.VDI.get_all())
        self._fail_compute2()
        # Nova's functional stack runs the rebuild cast as a call, so the refusal reaches the API
        with self.assertRaises(client.OpenStackApiException):
            self.admin_api.post_server_action(server["id"], {"evacuate": {"host": "compute"}})
        self._wait_for_migration_status(server, ["failed", "error"])
        self.assertIn("disks are on the failed host's own storage", self.stdlog.logger.output)
        self.assertEqual(vms, set(self.api_x.VM.get_all()))
        self.assertEqual(vdis, set(self.api_x.VDI.get_all()))
