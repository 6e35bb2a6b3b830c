"""Many servers booted at once through Nova stay within connection_concurrent XAPI sessions."""

from __future__ import annotations

from nova_xenapi.testing import nova_stack as base


class ConcurrentBootTest(base.XenAPIFunctionalBase):
    CAST_AS_CALL = False  # let the compute service build the servers in parallel
    CONNECTION_CONCURRENT = 4
    SERVERS = 20

    def test_twenty_servers_reach_active_within_the_session_limit(self):
        self.flags(instances=-1, cores=-1, ram=-1, group="quota")
        image = self.make_image(base.image_data(9, 1 << 20))
        body = self._build_server(image_uuid=image, networks="none")
        body.update(min_count=self.SERVERS, max_count=self.SERVERS)
        self.api.post_server({"server": body})
        servers = self.api.get_servers()
        self.assertEqual(self.SERVERS, len(servers))
        for server in servers:
            self._wait_for_state_change(server, "ACTIVE", max_retries=200)
        running = [r for r in self.api_x.VM.get_all_records().values()
                   if r["other_config"].get("nova_uuid") and r["power_state"] == "Running"]
        self.assertEqual(self.SERVERS, len(running))
        self.assertLessEqual(self.driver.session.peak_open, self.CONNECTION_CONCURRENT)
        for server in servers:
            self.api.delete_server(server["id"])
        for server in servers:
            self._wait_until_deleted(server)
        self.assertHostClean()
