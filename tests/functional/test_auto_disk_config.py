"""auto_disk_config through Nova: the root partition and filesystem grow to the flavor's disk."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from nova_xenapi.testing import disk_images
from nova_xenapi.testing import nova_stack as base

MIB = 1 << 20
GIB = 1 << 30


class AutoDiskConfigTest(base.XenAPIFunctionalBase):

    def _boot(self, data: bytes, disk_config: str) -> dict:
        body = self._build_server(image_uuid=self.make_image(data), flavor_id="1",
                                  networks="none")
        body["OS-DCF:diskConfig"] = disk_config
        return self._wait_for_state_change(self.api.post_server({"server": body}), "ACTIVE")

    def _root_disk_file(self, server: dict) -> Path:
        vbd, vdi = self.disk(server)
        out = Path(self.state_dir) / "root.raw"
        url = (f"{self.sim.url}/export_raw_vdi?session_id={self.xapi._session}"
               f"&vdi={vbd['VDI']}&format=raw")
        with urllib.request.urlopen(url) as resp, open(out, "wb") as f:
            shutil.copyfileobj(resp, f, 4 * MIB)
        self.assertEqual(int(vdi["virtual_size"]), out.stat().st_size)
        return out

    def test_auto_grows_the_partition_and_filesystem_and_keeps_the_files(self):
        image = disk_images.partitioned(Path(self.state_dir) / "image.raw", 48 * MIB, 32 * MIB,
                                        files={"motd": b"hello\n", "data": os.urandom(MIB)})
        files = {name: disk_images.read_file(image, name) for name in ("motd", "data")}
        server = self._boot(image.read_bytes(), "AUTO")
        self.assertEqual("AUTO", server["OS-DCF:diskConfig"])
        disk = self._root_disk_file(server)
        (part,) = disk_images.partitions(disk)
        self.assertEqual(disk_images.START, part["start"])
        self.assertEqual(GIB // 512 - 1, part["end"])  # flavor 1: a 1 GiB root disk
        code, report = disk_images.fs_check(disk)
        self.assertEqual(0, code, report)
        self.assertEqual(part["sectors"] * 512, disk_images.fs_size(disk))
        for name, data in files.items():
            self.assertEqual(data, disk_images.read_file(disk, name))
        dom0 = self.api_x.host.get_control_domain(self.api_x.host.get_all()[0])
        self.assertEqual([], self.api_x.VM.get_VBDs(dom0))
        self._delete_server(server)
        self.assertHostClean()

    def test_manual_leaves_the_partition_as_the_image_made_it(self):
        image = disk_images.partitioned(Path(self.state_dir) / "image.raw", 48 * MIB, 32 * MIB)
        server = self._boot(image.read_bytes(), "MANUAL")
        (part,) = disk_images.partitions(self._root_disk_file(server))
        self.assertEqual(32 * MIB // 512, part["sectors"])
        self._delete_server(server)
        self.assertHostClean()

    def test_a_disk_it_cannot_grow_still_boots_as_it_is(self):
        data = base.image_data(5)  # no partition table at all
        server = self._boot(data, "AUTO")
        vbd, _ = self.disk(server)
        self.assertEqual(data, self.read_vdi(vbd["VDI"], len(data)))
        self._delete_server(server)
        self.assertHostClean()
