"""Cinder NFS volumes through Nova's API.

Nova's CinderFixture stands in for Cinder's API; its connection info is what
Cinder's NFS driver sends (``export``, ``name``, ``options``, ``format``),
and the volume's file lies in the export, a directory xapisim serves as the
NFS export (no NFS server runs: see xapisim/nfs_sr.py).  The driver
introduces the export as an nfs SR with ``nosubdir``, the dom0 plugin links
the file as ``<vdi-uuid>.raw`` and the VDI's bytes are the file's.  After
each step the test checks XAPI's SRs, VDIs and VBDs, the export's files and
the volume's bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid
from pathlib import Path

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base

MIB = 1 << 20
EXPORT = "127.0.0.1:/srv/cinder-nfs"


class NfsVolumeTest(base.XenAPIFunctionalBase):
    NFS_EXPORT = EXPORT

    def setUp(self):
        super().setUp()
        self.cinder.VOLUME_CONNECTION_INFO = {}
        self.image = self.make_image(base.image_data())
        self.export = Path(self.nfs_dir)

    def volume(self, size: int = 16 * MIB, **data) -> tuple[str, Path]:
        """A volume as Cinder's NFS driver makes it: a raw file volume-<id> in the export."""
        volume_id = str(uuid.uuid4())
        path = self.export / f"volume-{volume_id}"
        with open(path, "wb") as f:
            f.truncate(size)
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = {
            "driver_volume_type": "nfs",
            "data": {"export": EXPORT, "name": path.name, "options": "-o vers=4.1,noatime",
                     "format": "raw", "access_mode": "rw", "encrypted": False, **data}}
        return volume_id, path

    def nfs_srs(self) -> list[dict]:
        return [r for r in self.api_x.SR.get_all_records().values()
                if r["type"] == "nfs" and r["other_config"].get("nova_volume_sr")]

    def volume_vbd(self, server: dict) -> dict:
        for vbd in self.vm_of(server)["VBDs"]:
            rec = self.api_x.VBD.get_record(vbd)
            if rec["VDI"] != "OpaqueRef:NULL" and \
                    self.api_x.SR.get_type(self.api_x.VDI.get_SR(rec["VDI"])) == "nfs":
                return rec
        self.fail("no NFS volume attached")

    def files(self) -> list[str]:
        return sorted(p.name for p in self.export.iterdir())

    def write_through_xapi(self, vdi: str, data: bytes) -> None:
        x = self.api_x
        task = x.task.create("write", "")
        url = f"{self.sim.url}/import_raw_vdi?session_id={self.xapi._session}&vdi={vdi}&task_id={task}"
        urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT")).read()
        while x.task.get_status(task) == "pending":
            time.sleep(0.05)
        self.assertEqual("success", x.task.get_status(task))
        x.task.destroy(task)

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def test_attach_write_extend_detach_and_the_file_is_the_volume(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        volume_id, path = self.volume()
        with open(path, "r+b") as f:
            f.write(b"written-by-cinder" * 100)
        self._attach_volume(server, volume_id)
        vbd = self.volume_vbd(server)
        self.assertTrue(vbd["currently_attached"], "not hot-plugged into the running VM")
        vdi = self.api_x.VDI.get_record(vbd["VDI"])
        self.assertEqual(({"type": "raw"}, 16 * MIB), (vdi["sm_config"], int(vdi["virtual_size"])))
        [sr] = self.nfs_srs()
        self.assertEqual({"nosubdir": "true"}, sr["sm_config"])
        pbd = self.api_x.PBD.get_record(sr["PBDs"][0])
        self.assertEqual({"server": "127.0.0.1", "serverpath": "/srv/cinder-nfs",
                          "nfsversion": "4.1", "options": "noatime"}, pbd["device_config"])
        self.assertEqual(sorted([path.name, f"{vdi['uuid']}.raw"]), self.files())
        self.assertEqual(self.digest(b"written-by-cinder" * 100),
                         self.digest(self.read_vdi(vbd["VDI"], 1700)))
        data = os.urandom(MIB)
        self.write_through_xapi(vbd["VDI"], data)
        self.assertEqual(self.digest(data), self.digest(path.read_bytes()[:MIB]))

        os.truncate(path, 1 << 30)  # Cinder grew the file (the fixture's volumes are 1 GiB)
        self.api.microversion = "2.51"
        self.api.api_post("/os-server-external-events", {"events": [{
            "name": "volume-extended", "server_uuid": server["id"], "tag": volume_id}]})
        deadline = time.monotonic() + 30
        while int(self.api_x.VDI.get_virtual_size(vbd["VDI"])) != 1 << 30:
            self.assertLess(time.monotonic(), deadline, "the VDI never grew")
            time.sleep(0.2)

        self.api.delete_server_volume(server["id"], volume_id)
        self._wait_for_volume_detach(server["id"], volume_id)
        self.assertEqual([], self.nfs_srs(), "the volume SR is left on the host")
        self.assertEqual([path.name], self.files(), "the VDI's name of the file is left")
        self.assertEqual(self.digest(data), self.digest(path.read_bytes()[:MIB]))
        self._delete_server(server)
        self.assertHostClean()

    def test_boot_from_an_nfs_volume_then_delete_leaves_the_file_alone(self):
        root_id, root = self.volume(size=32 * MIB)
        with open(root, "r+b") as f:
            f.write(b"bootable-nfs-volume" * 500)
        body = {"server": {"name": "bfv-nfs", "flavorRef": "1", "networks": "none",
                           "block_device_mapping_v2": [
                               {"boot_index": 0, "uuid": root_id, "source_type": "volume",
                                "destination_type": "volume"}]}}
        server = self._wait_for_state_change(self.api.post_server(body), "ACTIVE")
        rec = self.vm_of(server)
        vbd0 = [self.api_x.VBD.get_record(v) for v in rec["VBDs"]
                if self.api_x.VBD.get_userdevice(v) == "0"][0]
        self.assertEqual("nfs", self.api_x.SR.get_type(self.api_x.VDI.get_SR(vbd0["VDI"])))
        self.assertEqual(self.digest(b"bootable-nfs-volume" * 500),
                         self.digest(self.read_vdi(vbd0["VDI"], 9500)))
        self._delete_server(server)
        self.assertEqual([], self.nfs_srs())
        self.assertEqual([root.name], self.files())
        self.assertEqual(self.digest(b"bootable-nfs-volume" * 500),
                         self.digest(root.read_bytes()[:9500]))
        self.assertHostClean()

    def test_volumes_that_cannot_attach_are_refused_and_leave_nothing(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        cases = [
            (self.volume(format="qcow2")[0], "XenServer's NFS SR reads raw volume files only"),
            (self.volume(export="127.0.0.1:/srv/elsewhere")[0], "SR_BACKEND_FAILURE_73"),
            (self.volume(name="volume-gone")[0], "VOLUME_FILE_MISSING"),
        ]
        before = self.files()
        for volume_id, why in cases:
            self.assertRaises(client.OpenStackApiException, self.api.post_server_volume,
                              server["id"], {"volumeAttachment": {"volumeId": volume_id}})
            deadline = time.monotonic() + 30
            while self.api.get_server_volumes(server["id"]):
                self.assertLess(time.monotonic(), deadline, "the failed attachment stayed")
                time.sleep(0.2)
            self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])
            self.assertEqual([], self.nfs_srs())
            self.assertEqual(before, self.files())
            self.assertIn(why, self.stdlog.logger.output)
        self._delete_server(server)
        self.assertHostClean()
