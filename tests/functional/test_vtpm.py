"""vTPM servers through Nova's API: a XAPI VTPM made with the VM, kept, removed with it.

The flavor asks what XenServer offers (``nova_xenapi/vtpm.py``): TPM 2.0 on
the CRB interface, its state kept by xapi (``hw:tpm_secret_security=host``),
for a UEFI image. The scheduler places it by the traits the driver reports;
a flavor asking for the TIS model (Nova's default) finds no host.
"""

from __future__ import annotations

import os_traits as ot

from nova_xenapi.testing import nova_stack as base
from xapisim.messages import vtpm as sim_vtpm

TPM = {"hw:tpm_version": "2.0", "hw:tpm_model": "tpm-crb", "hw:tpm_secret_security": "host"}


class VTPMTest(base.XenAPIFunctionalBase):
    # RPC casts stay casts: a compute's refusal of a resize reaches the server's actions,
    # not the API caller as a 500, as on a real cloud
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        self.flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0,
                                          name="tpm", extra_spec=TPM)
        self.uefi = self.make_image(base.image_data(), hw_firmware_type="uefi")

    def state(self, vtpm: str) -> str:
        return sim_vtpm.contents(self.sim.backend.store, vtpm)

    def test_the_host_reports_what_xapi_offers(self):
        traits = set(self._get_provider_traits(self._get_provider_uuid_by_host("xs-host-1")))
        self.assertLessEqual({ot.COMPUTE_SECURITY_TPM_2_0, ot.COMPUTE_SECURITY_TPM_CRB,
                              ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST}, traits)
        self.assertFalse({ot.COMPUTE_SECURITY_TPM_1_2, ot.COMPUTE_SECURITY_TPM_TIS} & traits)

    def test_a_vtpm_server_keeps_its_tpm_through_its_life_and_loses_it_when_deleted(self):
        server = self._create_server(image_uuid=self.uefi, flavor_id=self.flavor,
                                     networks="none")
        rec = self.vm_of(server)
        self.assertEqual("uefi", rec["HVM_boot_params"]["firmware"])
        (vtpm,) = rec["VTPMs"]
        self.assertTrue(self.api_x.VTPM.get_is_unique(vtpm))
        state = self.state(vtpm)
        self.assertTrue(state, "the guest's first boot made the TPM's state")

        for hard in (False, True):
            server = self._reboot_server(server, hard=hard)
            self.assertEqual([vtpm], self.vm_of(server)["VTPMs"])
        server = self._stop_server(server)
        server = self._start_server(server)
        self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual([vtpm], self.vm_of(server)["VTPMs"])
        self.assertEqual(state, self.state(vtpm))

        # a snapshot is the root disk's: the image holds no TPM state, no VTPM is made
        self._snapshot_server(server, "tpm-snap")
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self.assertEqual([vtpm], self.api_x.VTPM.get_all())

        # a resize would make a new VM from the disks: refused, the server as it was
        bigger = self._create_flavor(memory_mb=1024, vcpu=1, disk=1, ephemeral=0,
                                     name="tpm-big", extra_spec=TPM)
        self.flags(allow_resize_to_same_host=True)
        self.api.post_server_action(server["id"], {"resize": {"flavorRef": bigger}})
        event = self._wait_for_instance_action_event(server, "resize", "compute_resize_instance",
                                                     "Error")
        self.assertIn("has a vTPM", str(event))
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual(512, server["flavor"]["ram"])
        self.assertEqual("Running", self.vm_of(server)["power_state"])
        self.assertEqual([vtpm], self.vm_of(server)["VTPMs"])
        self.assertEqual(state, self.state(vtpm))

        secrets = len(self.api_x.secret.get_all())
        self._delete_server(server)
        self.assertEqual([], self.api_x.VTPM.get_all())
        self.assertEqual(secrets - 1, len(self.api_x.secret.get_all()))
        self.assertHostClean()

    def test_what_xenserver_cannot_give_is_refused(self):
        # TIS, Nova's default model: no host has the trait
        tis = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0, name="tis",
                                  extra_spec={"hw:tpm_version": "2.0",
                                              "hw:tpm_secret_security": "host"})
        server = self._create_server(image_uuid=self.uefi, flavor_id=tis, networks="none",
                                     expected_state="ERROR")
        self.assertIn("No valid host", server["fault"]["message"])
        self._delete_server(server)
        # a BIOS image: xapi would not start it, so nothing is made
        bios = self.make_image(base.image_data())
        server = self._create_server(image_uuid=bios, flavor_id=self.flavor, networks="none",
                                     expected_state="ERROR")
        self.assertIn("UEFI", server["fault"]["message"])
        self._delete_server(server)
        self.assertEqual([], self.api_x.VTPM.get_all())
        self.assertHostClean()

    def test_a_pool_without_the_feature_offers_no_vtpm(self):
        backend = self.sim.backend
        backend.store.set("pool", backend.pool_ref, restrictions={"restrict_vtpm": "true"})
        self.addCleanup(backend.store.set, "pool", backend.pool_ref,
                        restrictions={"restrict_vtpm": "false"})
        self._run_periodics()
        server = self._create_server(image_uuid=self.uefi, flavor_id=self.flavor,
                                     networks="none", expected_state="ERROR")
        self.assertIn("No valid host", server["fault"]["message"])
        self._delete_server(server)
        self.assertHostClean()


class VTPMLiveMigrationTest(base.XenAPIFunctionalBase):
    """In a pool on shared storage, VM.pool_migrate keeps the VM's record, and with it its
    VTPM and the TPM's state; Nova allows it for hw:tpm_secret_security=host."""

    POOL_HOSTS = 2
    SHARED_SR = "nfs"

    def setUp(self):
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")

    def test_the_vtpm_moves_with_the_server(self):
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0, name="tpm",
                                     extra_spec=TPM)
        image = self.make_image(base.image_data(), hw_firmware_type="uefi")
        server = self._create_server(image_uuid=image, flavor_id=flavor, networks="none",
                                     az="nova:compute")
        (vtpm,) = self.vm_of(server)["VTPMs"]
        state = sim_vtpm.contents(self.sim.backend.store, vtpm)
        self.api.post_server_action(server["id"], {"os-migrateLive": {
            "host": "compute2", "block_migration": "auto"}})
        self._wait_for_migration_status(server, ["completed"])
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual([vtpm], self.vm_of(server)["VTPMs"])
        self.assertEqual(state, sim_vtpm.contents(self.sim.backend.store, vtpm))
        self._delete_server(server)
        self.assertEqual([], self.api_x.VTPM.get_all())
