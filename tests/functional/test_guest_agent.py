"""The XenStore guest agent through Nova's API (``nova_xenapi/agent.py``).

xapisim runs a simulated agent in a guest whose boot disk starts with its
marker (the image "has the agent"); it speaks the old driver's protocol on
the guest's XenStore and really decrypts the password with the key agreed by
Diffie-Hellman, so the test reads back what the guest received.
"""

from __future__ import annotations

import base64
import time

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base
from xapisim.guest_agent import AGENT_MARKER


class GuestAgentTest(base.XenAPIFunctionalBase):

    def setUp(self):
        super().setUp()
        self.flags(agent_timeout=2, agent_version_timeout=4, agent_resetnetwork_timeout=2,
                   group="xenserver")
        # a failed build goes to ERROR with the driver's fault, not to another host
        self.flags(max_attempts=1, group="scheduler")
        data = base.image_data()
        self.with_agent = self.make_image(AGENT_MARKER + data[len(AGENT_MARKER):],
                                          xenapi_use_agent="true")

    def guest(self, server: dict):
        (ref,) = self.api_x.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])
        return self.sim.backend.agents.guest(ref)

    def test_boot_and_change_password_reach_the_guest(self):
        self.api.microversion = "2.56"  # the last with personality files
        body = self._build_server(image_uuid=self.with_agent, networks="none")
        body["adminPass"] = "first-Pa55word"
        body["personality"] = [{"path": "/etc/motd",
                                "contents": base64.b64encode(b"hello from nova\n").decode()}]
        server = self._wait_for_state_change(self.api.post_server({"server": body}), "ACTIVE")
        guest = self.guest(server)
        self.assertEqual("first-Pa55word", guest.password)
        self.assertEqual(b"hello from nova\n", guest.files["/etc/motd"])
        self.assertEqual(1, guest.network_resets)
        self.assertEqual(["version", "inject_file", "keyinit", "password", "resetnetwork"],
                         guest.requests)

        self.api.post_server_action(server["id"], {"changePassword": {"adminPass": "Sec0nd-pass"}})
        deadline = time.monotonic() + 30
        while guest.password != "Sec0nd-pass" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual("Sec0nd-pass", guest.password)
        self._delete_server(server)
        self.assertHostClean()

    def test_an_image_without_the_agent_boots_without_waiting_and_refuses_a_password(self):
        started = time.monotonic()
        server = self._create_server(image_uuid=self.make_image(base.image_data()),
                                     networks="none")
        self.assertLess(time.monotonic() - started, 30)
        self.assertIsNone(self.guest(server))
        e = self.assertRaises(client.OpenStackApiException, self.api.post_server_action,
                              server["id"], {"changePassword": {"adminPass": "nope-123"}})
        self.assertEqual(409, e.response.status_code)
        self.assertIn("agent is not enabled", str(e))
        self._delete_server(server)
        self.assertHostClean()

    def test_an_image_that_claims_an_agent_it_lacks_fails_the_boot_clearly(self):
        liar = self.make_image(base.image_data(), xenapi_use_agent="true")
        server = self._create_server(image_uuid=liar, networks="none", expected_state="ERROR")
        self.assertIn("did not answer version", server["fault"]["message"])
        self._delete_server(server)
        self.assertHostClean()
