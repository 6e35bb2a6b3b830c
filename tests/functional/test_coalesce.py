"""Snapshots on a VHD SR wait for the garbage collector to coalesce the disk's chain back."""

from __future__ import annotations

from nova import context, exception, objects

from nova_xenapi.storage import disks
from nova_xenapi.testing import nova_stack as base


class CoalesceWaitTest(base.XenAPIFunctionalBase):

    def _snapshot(self, server: dict, name: str) -> str:
        image = self.api.post_server_action(server["id"], {"createImage": {"name": name}})["image_id"]
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None, "status": "ACTIVE"})
        return image

    def _guest_writes(self, server: dict, n: int) -> None:
        """The guest changes its disk, so the next snapshot needs a base copy of its own (a
        snapshot of an unchanged disk links to the disk's parent and leaves nothing to wait for)."""
        _, root = self.disk(server)
        with self.sim.backend.disks.open_disk(self.api_x.SR.get_uuid(root["SR"]), "ext",
                                              root["uuid"], writable=True) as disk:
            disk.write_at(n * (1 << 20), bytes([n + 1]) * 4096)

    def _chain(self, server: dict) -> list[str]:
        vbd, _ = self.disk(server)
        return disks.vhd_chain(self.driver.session, vbd["VDI"])

    def test_repeated_snapshots_do_not_grow_the_chain(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        before = self._chain(server)
        self.assertEqual(2, len(before), "a clone of the cached image, over its base copy")
        for i in range(3):
            self._guest_writes(server, i)
            image = self._snapshot(server, f"snap-{i}")
            self.assertEqual("active", self.glance.show(None, image)["status"])
            self.assertEqual(before, self._chain(server))
        self._delete_server(server)
        self.assertHostClean()

    def test_a_chain_that_never_coalesces_fails_the_snapshot_clearly(self):
        self.flags(vhd_coalesce_max_attempts=3, vhd_coalesce_poll_interval=0.01, group="xenserver")
        # a new driver (nova-compute restarted) reads the options; the host keeps its VMs
        self.computes["compute"] = self.restart_compute_service(self.computes["compute"],
                                                                keep_hypervisor_state=False)
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        vbd, _ = self.disk(server)
        before = self._chain(server)
        # the SR's collector may not touch this leaf (as SM's other_config:leaf-coalesce=false)
        self.api_x.VDI.add_to_other_config(vbd["VDI"], "leaf-coalesce", "false")
        self._guest_writes(server, 1)
        image = self._snapshot(server, "stuck")
        self.assertEqual(len(before) + 1, len(self._chain(server)))
        # the snapshot failed with the reason as the instance's fault, and Nova removed its image
        faults = objects.InstanceFaultList.get_by_instance_uuids(
            context.get_admin_context(), [server["id"]])
        self.assertIn("was not coalesced after 3 checks", faults[0].message)
        self.assertRaises(exception.ImageNotFound, self.glance.show, None, image)
        # once the collector may work again, the next snapshot's wait sees the chain shrink back
        self.api_x.VDI.remove_from_other_config(vbd["VDI"], "leaf-coalesce")
        self._guest_writes(server, 2)
        self._snapshot(server, "unstuck")
        self.assertEqual(before, self._chain(server))
        self._delete_server(server)
        self.assertHostClean()
