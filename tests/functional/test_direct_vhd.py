"""direct_vhd through Nova: dom0's glance_vhd plugin and a real Glance API, on ext and lvm SRs."""

from __future__ import annotations

import time

from nova_xenapi.storage import image_cache
from nova_xenapi.storage.images import HandlerNotAvailable
from nova_xenapi.testing import nova_stack as base
from nova_xenapi.testing import vhd_images

MIB = 1 << 20
SIZE = 8 * MIB
LAYERS = [{0: b"\x5a" * (3 * MIB), 5 * MIB: b"base" * 4096},
          {MIB - 100: b"\x01" * 700, 6 * MIB: b"\x02" * 5000},
          {0: b"leaf-boot-sector" * 32}]


class DirectVhdTest(base.XenAPIFunctionalBase):
    REAL_GLANCE = True
    IMAGE_HANDLER = "direct_vhd"

    def _root_bytes(self, server: dict, length: int = SIZE) -> bytes:
        vbd, _ = self.disk(server)
        return self.read_vdi(vbd["VDI"], length)

    def _wait_active(self, image_id: str) -> dict:
        for _ in range(200):
            image = vhd_images.image(self.glance_server.url, image_id)
            if image["status"] == "active":
                return image
            time.sleep(0.05)
        self.fail(f"image {image_id} stayed {image['status']}")

    def test_boot_snapshot_round_trip_and_boot_again(self):
        image = self.make_vhd_image(LAYERS, SIZE)
        server = self._create_server(image_uuid=image, networks="none")
        _, root = self.disk(server)
        self.assertEqual(1024 ** 3, int(root["virtual_size"]))
        self.assertEqual(vhd_images.expected(SIZE, LAYERS), self._root_bytes(server))

        # the image stays in the SR as a cached base, a leaf over the base copy its clone made
        bases = [r for r in self.api_x.VDI.get_all_records().values()
                 if r["other_config"].get(image_cache.CACHE_KEY) == image]
        self.assertEqual(1, len(bases))
        self.assertIn("vhd-parent", bases[0]["sm_config"])

        # the guest writes, then a snapshot goes to Glance as a VHD chain and boots again
        written = self._write_guest(server, 2 * MIB, b"written-by-guest" * 64)
        resp = self.api.post_server_action(server["id"], {"createImage": {"name": "snap"}})
        snap = self._wait_active(resp["image_id"])
        self.assertEqual(("vhd", "ovf"), (snap["disk_format"], snap["container_format"]))
        members = vhd_images.members(vhd_images.data(self.glance_server.url, snap["id"]))
        self.assertGreaterEqual(len(members), 2, "the snapshot went up as a chain")
        again = self._create_server(image_uuid=snap["id"], networks="none")
        self.assertEqual(written, self._root_bytes(again))

        self._delete_server(server)
        self._delete_server(again)
        self.assertHostClean()
        # once no instance uses the images, the cache manager removes them and their base copies
        image_cache.remove_unused(self.driver.session, set())
        self.assertEqual([], [r["uuid"] for r in self.api_x.VDI.get_all_records().values()
                              if not r["managed"]])

    def _write_guest(self, server: dict, offset: int, data: bytes) -> bytes:
        """Write into the server's root disk as its guest would, and return what it then holds."""
        _, root = self.disk(server)
        sr_uuid = self.api_x.SR.get_uuid(root["SR"])
        with self.sim.backend.disks.open_disk(sr_uuid, "ext", root["uuid"], writable=True) as disk:
            disk.write_at(offset, data)
        expected = bytearray(vhd_images.expected(SIZE, LAYERS))
        expected[offset:offset + len(data)] = data
        return bytes(expected)

    def test_bad_images_fail_the_boot_and_leave_nothing(self):
        too_big = self.make_vhd_image([{0: b"x" * 512}], 2 * 1024 ** 3)  # 2 GiB disk, 1 GiB flavor
        not_a_tar = vhd_images.create_image(self.glance_server.url)
        vhd_images.upload(self.glance_server.url, not_a_tar, b"\x00not a tar" * 1000)
        raw = vhd_images.create_image(self.glance_server.url, disk_format="raw",
                                      container_format="bare")
        vhd_images.upload(self.glance_server.url, raw, base.image_data())
        for image, reason in ((too_big, "Flavor's disk is too small"),
                              (not_a_tar, "IMAGE_NOT_A_TAR"), (raw, "not disk_format raw")):
            server = self._create_server(image_uuid=image, networks="none",
                                         expected_state="ERROR")
            self.assertIn(reason, server["fault"]["message"] + server["fault"].get("details", ""))
            self._delete_server(server)
        self.assertHostClean()
        sr_dir = self.sim.backend.disks.sr_dir(
            self.api_x.SR.get_uuid(self.api_x.pool.get_default_SR(self.api_x.pool.get_all()[0])))
        self.assertEqual([], [p.name for p in sr_dir.iterdir() if p.name.startswith(".nova-staging")])

    def test_a_failed_lookup_after_the_download_removes_the_chain(self):
        """Found by the fault sweep: the chain was in the SR and scanned, ``VDI.get_by_uuid``
        of its leaf failed, and the leaf VDI stayed in the SR for good."""
        self.driver.host.cache_images = "none"  # every boot downloads
        self.flags(max_attempts=1, group="scheduler")  # the driver's error is the fault
        image = self.make_vhd_image(LAYERS, SIZE)
        for wire, action in (("VDI.get_by_uuid", "error"), ("SR.scan", "error")):
            with self.subTest(wire=wire):
                self.sim.faults.add(wire, action)
                try:
                    server = self._create_server(image_uuid=image, networks="none",
                                                 expected_state="ERROR")
                finally:
                    self.sim.faults.clear()
                self.assertIn(wire, server["fault"]["message"] + server["fault"].get("details", ""))
                self._delete_server(server)
                self.assertHostClean()


class DirectVhdOnLvmTest(base.XenAPIFunctionalBase):
    IMAGE_HANDLER = "direct_vhd"
    SR_TYPE = "lvm"

    def setUp(self):
        self.startup_error = None
        try:
            super().setUp()
        except HandlerNotAvailable as exc:
            self.startup_error = exc

    def test_compute_refuses_to_start(self):
        self.assertIsNotNone(self.startup_error, "nova-compute started with direct_vhd on LVM")
        message = str(self.startup_error)
        self.assertIn("file-based SR", message)
        self.assertIn("lvm", message)
        self.assertIn("vdi_remote_stream", message)
