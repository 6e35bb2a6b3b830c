"""A real VNC client sees the guest's console through Nova's console path.

Nova gives the user a console URL whose token nova-novncproxy turns into
connect info: the host's ``/console`` handler and a path with a session
(``nova_xenapi/console.py``). ``console_relay.Relay`` does what the proxy does
with it (``CONNECT``, then Nova's own RFB security proxy) and vncdotool, a
VNC client from PyPI, takes a screenshot through it. The screenshot must be
the guest's console text as Nova's console-output API reads it, drawn as
xapisim's VNC server draws it, and change when the guest writes more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse

from nova import context, objects
from PIL import Image, ImageChops

from nova_xenapi.testing import console_relay
from nova_xenapi.testing import nova_stack as base
from xapisim import console_vnc

VNCDO = os.path.join(os.path.dirname(sys.executable), "vncdo")


class VNCConsoleTest(base.XenAPIFunctionalBase):

    def screenshot(self, relay: console_relay.Relay, name: str) -> Image.Image:
        path = os.path.join(self.state_dir, name)
        done = subprocess.run([VNCDO, "-s", f"127.0.0.1::{relay.port}", "capture", path],
                              timeout=60, capture_output=True, text=True)
        self.assertEqual((0, []), (done.returncode, relay.errors), done.stderr[-2000:])
        return Image.open(path).convert("RGB")

    def console_text(self, server: dict) -> str:
        return self.api.post_server_action(server["id"], {"os-getConsoleOutput": {}})["output"]

    def assertShows(self, shot: Image.Image, text: str) -> None:
        self.assertTrue(text.strip())
        self.assertIsNone(ImageChops.difference(shot, console_vnc.render(text)).getbbox(),
                          "the screen is not the console text")

    def test_a_vnc_client_sees_the_guests_console_text(self):
        server = self._create_server(image_uuid=self.make_image(base.image_data()), networks="none")
        url = self.api.api_post(f"/servers/{server['id']}/remote-consoles", {
            "remote_console": {"protocol": "vnc", "type": "novnc"}}).body["remote_console"]["url"]
        # what nova-novncproxy does with the token in the URL
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(
            urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["path"][0]).query)["token"][0]
        info = objects.ConsoleAuthToken.validate(context.get_admin_context(), token)
        relay = console_relay.Relay(info.host, info.port, info.internal_access_path)
        self.addCleanup(relay.close)

        first = self.screenshot(relay, "first.png")
        text = self.console_text(server)
        self.assertIn("login:", text)
        self.assertShows(first, text)
        self.assertEqual((console_vnc.WIDTH, console_vnc.HEIGHT), first.size)
        # the guest writes more: an NMI makes it print a panic line
        self.api.microversion = "2.17"
        self.api.post_server_action(server["id"], {"trigger_crash_dump": None})
        later = self.screenshot(relay, "later.png")
        text = self.console_text(server)
        self.assertIn("NMI received", text)
        self.assertShows(later, text)
        self.assertIsNotNone(ImageChops.difference(first, later).getbbox())
        self._delete_server(server)
        self.assertHostClean()
