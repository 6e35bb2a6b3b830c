"""``trigger_crash_dump`` through Nova's API: an NMI reaches the guest from dom0.

XAPI's ``VM.send_trigger`` answers NOT_IMPLEMENTED once the VM is running
(xapi_vm.ml), so the driver has dom0 run ``xl trigger <domid> nmi`` through the
``xenhost.py`` plugin. xapisim's ``xl`` makes the guest print what a Linux
guest prints for an unknown NMI to its console log, which Nova's console
output then shows.
"""

from __future__ import annotations

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base


class CrashDumpTest(base.XenAPIFunctionalBase):

    def test_an_nmi_reaches_a_running_guest_and_a_stopped_one_is_refused(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        ref = self.vm_ref(server)
        # what xapi itself answers, which is why dom0 sends it
        with self.assertRaisesRegex(Exception, "NOT_IMPLEMENTED"):
            self.api_x.VM.send_trigger(ref, "nmi")
        self.api.microversion = "2.17"
        self.api.post_server_action(server["id"], {"trigger_crash_dump": None})
        out = self.api.post_server_action(server["id"], {"os-getConsoleOutput": {"length": 10}})
        self.assertIn("NMI received", out["output"])
        self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])

        self.api.post_server_action(server["id"], {"os-stop": None})
        server = self._wait_for_state_change(server, "SHUTOFF")
        with self.assertRaisesRegex(Exception, "VM_BAD_POWER_STATE"):
            self.api_x.VM.send_trigger(ref, "nmi")
        e = self.assertRaises(client.OpenStackApiException, self.api.post_server_action,
                              server["id"], {"trigger_crash_dump": None})
        self.assertEqual(409, e.response.status_code)
        self._delete_server(server)
        self.assertHostClean()

    def test_the_driver_refuses_a_vm_that_is_not_running(self):
        """Nova's API already refuses a stopped server; a VM the guest itself powered off
        behind Nova's back is the driver's to refuse."""
        from nova import exception, objects
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        self.api_x.VM.hard_shutdown(self.vm_ref(server))
        instance = objects.Instance.get_by_uuid(self._admin_context(), server["id"])
        self.assertRaises(exception.InstanceNotRunning, self.driver.trigger_crash_dump, instance)
        self._delete_server(server)
        self.assertHostClean()

    def vm_ref(self, server: dict) -> str:
        (ref,) = self.api_x.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])
        return ref

    def _admin_context(self):
        from nova import context
        return context.get_admin_context()
