"""Cinder volumes through Nova's API, on LUNs of a real tgtd.

Nova's CinderFixture stands in for Cinder's API. Its connection info for each
volume points at a LUN of a private tgtd (a target per volume, with CHAP, as
Cinder's LVM driver exports them), so xapisim's iscsi SR logs in for real.
After each operation the test checks what XAPI holds (SR, PBD, VDI, VBD),
that no SR or PBD is left once the volume is detached, and the bytes on the
LUN's backing file.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid
from pathlib import Path

import fixtures
from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base
from nova_xenapi.testing.iscsi_target import IscsiTarget

MIB = 1 << 20
CHAP_USER = "nova-chap"
CHAP_SECRET = "volume-chap-secret-2718"


class _VolumeBase(base.XenAPIFunctionalBase):

    def setUp(self):
        super().setUp()
        self.target = IscsiTarget(Path(self.useFixture(fixtures.TempDir()).path)).start()
        self.addCleanup(self.target.stop)
        self.cinder.VOLUME_CONNECTION_INFO = {}  # this test's volumes only
        self.image = self.make_image(base.image_data())
        self.secret_watch.add(CHAP_SECRET)

    def volume(self, size: int = 16 * MIB, volume_id: str | None = None, **data) -> tuple[str, Path]:
        """A Cinder volume: its id, and the file behind its LUN."""
        volume_id = volume_id or str(uuid.uuid4())
        iqn = f"iqn.2010-10.org.openstack:volume-{volume_id}"
        lun_file = self.target.add_target(iqn, [size], chap=(CHAP_USER, CHAP_SECRET))[0]
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = {
            "driver_volume_type": "iscsi",
            "data": {"target_portal": self.target.portal, "target_iqn": iqn, "target_lun": 1,
                     "auth_method": "CHAP", "auth_username": CHAP_USER,
                     "auth_password": CHAP_SECRET, "access_mode": "rw", "encrypted": False,
                     **data}}
        return volume_id, lun_file

    def volume_srs(self) -> list[dict]:
        return [r for r in self.api_x.SR.get_all_records().values() if r["type"] == "iscsi"]

    def volume_vbds(self, server: dict) -> list[dict]:
        out = []
        for vbd in self.vm_of(server)["VBDs"]:
            rec = self.api_x.VBD.get_record(vbd)
            if rec["VDI"] != "OpaqueRef:NULL" and \
                    self.api_x.SR.get_type(self.api_x.VDI.get_SR(rec["VDI"])) == "iscsi":
                out.append(rec)
        return out

    def assertNoVolumeStorage(self) -> None:
        self.assertEqual([], self.volume_srs(), "a volume SR is left on the host")
        srs = set(self.api_x.SR.get_all())
        self.assertEqual([], [p for p, r in self.api_x.PBD.get_all_records().items()
                              if r["SR"] not in srs])

    def attachments(self, server: dict) -> list[dict]:
        return self.api.get_server_volumes(server["id"])

    def wait_for_no_attachments(self, server: dict, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.attachments(server):
            self.assertLess(time.monotonic(), deadline, "the failed attachment stayed")
            time.sleep(0.2)

    def write_through_xapi(self, vdi: str, data: bytes) -> None:
        x = self.api_x
        task = x.task.create("write", "")
        url = f"{self.sim.url}/import_raw_vdi?session_id={self.xapi._session}&vdi={vdi}&task_id={task}"
        urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT")).read()
        deadline = time.monotonic() + 60
        while x.task.get_status(task) == "pending":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual("success", x.task.get_status(task), x.task.get_error_info(task))
        x.task.destroy(task)

    @staticmethod
    def same(a: bytes, b: bytes) -> bool:
        """Compared by digest: a failure must not print megabytes."""
        return hashlib.sha256(a).digest() == hashlib.sha256(b).digest()



class VolumeTest(_VolumeBase):

    def test_attach_write_extend_detach_and_delete_with_a_volume_attached(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        first, first_file = self.volume()
        self._attach_volume(server, first)
        [attachment] = self.attachments(server)
        self.assertEqual("/dev/xvdb", attachment["device"])  # the first free device of the VM
        [vbd] = self.volume_vbds(server)
        self.assertTrue(vbd["currently_attached"], "not hot-plugged into the running VM")
        self.assertEqual("1", vbd["userdevice"])
        vdi = self.api_x.VDI.get_record(vbd["VDI"])
        self.assertEqual("1", vdi["sm_config"]["LUNid"])
        self.assertEqual(16 * MIB, int(vdi["virtual_size"]))
        [sr] = self.volume_srs()
        pbd = self.api_x.PBD.get_record(sr["PBDs"][0])
        self.assertTrue(pbd["currently_attached"])
        self.assertEqual(CHAP_USER, pbd["device_config"]["chapuser"])

        data = os.urandom(2 * MIB)  # what reaches the VDI is on the LUN, and the other way round
        self.write_through_xapi(vbd["VDI"], data)
        self.assertTrue(self.same(data, first_file.read_bytes()[:len(data)]))
        with open(first_file, "r+b") as f:
            f.seek(4 * MIB)
            f.write(b"from-the-array" * 100)
        self.assertTrue(self.same(b"from-the-array" * 100,
                                  self.read_vdi(vbd["VDI"], 5 * MIB)[4 * MIB:4 * MIB + 1400]))

        second, second_file = self.volume(size=8 * MIB)  # a second target: its own SR and device
        self._attach_volume(server, second)
        self.assertEqual(["/dev/xvdb", "/dev/xvdc"], sorted(a["device"] for a in self.attachments(server)))
        self.assertEqual(2, len(self.volume_srs()))

        iqn = self.cinder.VOLUME_CONNECTION_INFO[second]["data"]["target_iqn"]
        self.target.grow_lun(iqn, 1, 1 << 30)  # Cinder grew it (the fixture's volumes are 1 GiB)
        self.api.microversion = "2.51"
        self.api.api_post("/os-server-external-events", {"events": [{
            "name": "volume-extended", "server_uuid": server["id"], "tag": second}]})
        deadline = time.monotonic() + 30
        while not any(int(self.api_x.VDI.get_virtual_size(v["VDI"])) == 1 << 30
                      for v in self.volume_vbds(server)):
            self.assertLess(time.monotonic(), deadline, "the VDI never grew")
            time.sleep(0.2)

        self.api.delete_server_volume(server["id"], first)
        self._wait_for_volume_detach(server["id"], first)
        self.assertEqual(1, len(self.volume_vbds(server)))
        self.assertEqual(1, len(self.volume_srs()), "the other volume's SR must stay")
        self.assertTrue(self.same(data, first_file.read_bytes()[:len(data)]), "detach touched the volume")
        self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])

        [vbd] = self.volume_vbds(server)
        kept = os.urandom(MIB)
        self.write_through_xapi(vbd["VDI"], kept)
        self._delete_server(server)  # with the second volume still attached
        self.assertNoVolumeStorage()
        self.assertHostClean()
        self.assertTrue(self.same(kept, second_file.read_bytes()[:MIB]), "delete touched the volume")
        self.assertNotIn(CHAP_SECRET, self.stdlog.logger.output)

    def test_boot_from_volume_with_a_second_volume_and_an_ephemeral_disk(self):
        root_id, root_file = self.volume(size=32 * MIB)
        with open(root_file, "r+b") as f:
            f.write(b"bootable-volume" * 1000)
        data_id, _ = self.volume()
        flavor = self.api.post_flavor({"flavor": {"name": "bfv.eph", "ram": 256, "vcpus": 1,
                                                  "disk": 0, "OS-FLV-EXT-DATA:ephemeral": 1}})
        body = {"server": {"name": "bfv", "flavorRef": flavor["id"], "networks": "none",
                           "block_device_mapping_v2": [
                               {"boot_index": 0, "uuid": root_id, "source_type": "volume",
                                "destination_type": "volume"},
                               {"boot_index": -1, "uuid": data_id, "source_type": "volume",
                                "destination_type": "volume"},
                               {"boot_index": -1, "source_type": "blank",
                                "destination_type": "local", "guest_format": "ext4",
                                "volume_size": 1}]}}
        server = self._wait_for_state_change(self.api.post_server(body), "ACTIVE")
        rec = self.vm_of(server)
        self.assertEqual("Running", rec["power_state"])
        by_device = {}
        for vbd in rec["VBDs"]:
            r = self.api_x.VBD.get_record(vbd)
            by_device[r["userdevice"]] = (r, self.api_x.VDI.get_record(r["VDI"]))
        vbd0, root_vdi = by_device["0"]
        self.assertTrue(vbd0["bootable"])
        self.assertEqual("iscsi", self.api_x.SR.get_type(root_vdi["SR"]), "the root is not the volume")
        self.assertTrue(self.same(b"bootable-volume" * 1000,
                                  self.read_vdi(vbd0["VDI"], 15000)), "not the volume's bytes")
        self.assertEqual("ephemeral", by_device["2"][1]["other_config"].get("nova_disk_type"))
        self.assertEqual(2, len(self.volume_vbds(server)))
        self.assertEqual(2, len(self.volume_srs()))
        self._delete_server(server)
        self.assertNoVolumeStorage()
        self.assertHostClean()
        with open(root_file, "rb") as f:
            self.assertTrue(self.same(b"bootable-volume" * 1000, f.read(15000)),
                            "delete touched the root volume")

    def test_attach_to_a_stopped_server_then_start_it(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        server = self._stop_server(server)
        volume_id, _ = self.volume()
        self._attach_volume(server, volume_id)
        [vbd] = self.volume_vbds(server)
        self.assertFalse(vbd["currently_attached"])
        self._start_server(server)
        [vbd] = self.volume_vbds(server)
        self.assertTrue(vbd["currently_attached"], "the volume did not come up with the VM")
        # a snapshot is the root disk's image; the volume is Cinder's and is not copied
        snap = self.api.post_server_action(server["id"], {"createImage": {"name": "with-vol"}})
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self.assertEqual("active", self.glance.show(None, snap["image_id"])["status"])
        [sr] = self.volume_srs()
        self.assertEqual(1, len(sr["VDIs"]), "the snapshot left a copy of the volume")
        self.api.delete_server_volume(server["id"], volume_id)
        self._wait_for_volume_detach(server["id"], volume_id)
        self.assertNoVolumeStorage()

        # the array takes the LUN away while it is attached: the detach still cleans up
        volume_id, _ = self.volume()
        self._attach_volume(server, volume_id)
        self.target.remove_lun(self.cinder.VOLUME_CONNECTION_INFO[volume_id]["data"]["target_iqn"], 1)
        self.api.delete_server_volume(server["id"], volume_id)
        self._wait_for_volume_detach(server["id"], volume_id)
        self.assertEqual([], self.volume_vbds(server))
        self.assertNoVolumeStorage()
        self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])
        self._delete_server(server)
        self.assertHostClean()

    def test_attaches_that_fail_leave_the_server_as_it_was_and_nothing_behind(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        rbd = str(uuid.uuid4())
        self.cinder.VOLUME_CONNECTION_INFO[rbd] = {"driver_volume_type": "rbd",
                                                   "data": {"name": "volumes/v1"}}
        cases = [
            (self.volume(target_portal="127.0.0.1:1")[0], "SR_BACKEND_FAILURE_141"),  # target down
            (self.volume(auth_password="wrong-chap-secret")[0], "SR_BACKEND_FAILURE_68"),
            (self.volume(target_lun=7)[0], "LUN 7"),  # not on the target
            (rbd, "Could not find a handler for rbd volume"),
        ]
        for volume_id, why in cases:
            # the functional stack casts as calls, so the compute's failure reaches the API caller
            self.assertRaises(client.OpenStackApiException, self.api.post_server_volume,
                              server["id"], {"volumeAttachment": {"volumeId": volume_id}})
            self.wait_for_no_attachments(server)
            self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])
            self.assertEqual([], self.volume_vbds(server))
            self.assertNoVolumeStorage()
            self.assertIn(why, self.stdlog.logger.output)
        for secret in (CHAP_SECRET, "wrong-chap-secret"):
            self.assertNotIn(secret, self.stdlog.logger.output)

        # a detach that fails halfway (the host refuses PBD.unplug once) can be run again
        volume_id, _ = self.volume()
        self._attach_volume(server, volume_id)
        self.sim.faults.add("PBD.unplug", "error", error=["INTERNAL_ERROR", "injected"], count=1)
        self.assertRaises(client.OpenStackApiException, self.api.delete_server_volume,
                          server["id"], volume_id)
        self.assertEqual([], self.volume_vbds(server))  # the guest let go of it already
        self.assertEqual(1, len(self.volume_srs()))
        self.api.delete_server_volume(server["id"], volume_id)
        self._wait_for_volume_detach(server["id"], volume_id)
        self.assertNoVolumeStorage()
        self._delete_server(server)
        self.assertHostClean()


class VolumeResizeTest(_VolumeBase):
    """A resize (to the same host here) moves the server's own disks; its volume is detached
    from the source VM and attached to the new one, and back again on a revert."""

    DOM0_SSH = True

    def test_resize_confirm_and_revert_keep_the_volume(self):
        self.flags(allow_resize_to_same_host=True)
        small = self._create_flavor(memory_mb=256, vcpu=1, disk=1, name="small")
        big = self._create_flavor(memory_mb=512, vcpu=1, disk=2, name="big")
        bigger = self._create_flavor(memory_mb=768, vcpu=1, disk=3, name="bigger")
        server = self._create_server(image_uuid=self.image, flavor_id=small, networks="none")
        volume_id, lun_file = self.volume()
        self._attach_volume(server, volume_id)
        [vbd] = self.volume_vbds(server)
        data = os.urandom(MIB)
        self.write_through_xapi(vbd["VDI"], data)

        self.api.post_server_action(server["id"], {"resize": {"flavorRef": big}})
        server = self._wait_for_state_change(server, "VERIFY_RESIZE")
        [vbd] = self.volume_vbds(server)  # on the new VM, plugged, at the same device
        self.assertTrue(vbd["currently_attached"])
        self.assertEqual("1", vbd["userdevice"])
        self.assertEqual(1, len(self.volume_srs()))
        orig = self.api_x.VM.get_by_name_label(self.vm_of(server)["name_label"] + "-orig")
        self.assertEqual(1, len(orig))
        self.assertEqual([], [v for v in self.api_x.VM.get_VBDs(orig[0])
                              if self.api_x.VBD.get_VDI(v) == vbd["VDI"]], "still on the source VM")
        self.api.post_server_action(server["id"], {"confirmResize": None})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual(1, len(self.volume_vbds(server)))
        self.assertTrue(self.same(data, self.read_vdi(self.volume_vbds(server)[0]["VDI"], MIB)))

        self.api.post_server_action(server["id"], {"resize": {"flavorRef": bigger}})
        server = self._wait_for_state_change(server, "VERIFY_RESIZE")
        self.api.post_server_action(server["id"], {"revertResize": None})
        server = self._wait_for_state_change(server, "ACTIVE")
        [vbd] = self.volume_vbds(server)  # back on the original VM
        self.assertTrue(vbd["currently_attached"])
        self.assertEqual(1, len(self.volume_srs()))
        self._delete_server(server)
        self.assertNoVolumeStorage()
        self.assertHostClean()
        self.assertTrue(self.same(data, lun_file.read_bytes()[:MIB]), "the resizes touched the volume")


class VolumeLiveMigrationTest(_VolumeBase):
    """Inside a pool (shared storage) a server live-migrates with its volume: the volume's SR
    is plugged on the destination first, and the source lets go of it after."""

    POOL_HOSTS = 2
    SHARED_SR = "nfs"

    def setUp(self):
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")

    def pbd_hosts(self) -> list[str]:
        [sr] = self.volume_srs()
        return sorted(self.api_x.host.get_address(self.api_x.PBD.get_host(p)) for p in sr["PBDs"])

    def test_live_migrate_with_a_volume_there_and_back_then_block_migration_is_refused(self):
        server = self._create_server(image_uuid=self.image, networks="none", az="nova:compute")
        volume_id, lun_file = self.volume()
        self._attach_volume(server, volume_id)
        self.assertEqual(["127.0.0.1"], self.pbd_hosts())
        [vbd] = self.volume_vbds(server)
        data = os.urandom(MIB)
        self.write_through_xapi(vbd["VDI"], data)
        for target, address in (("compute2", "127.0.0.2"), ("compute", "127.0.0.1")):
            self.api.post_server_action(server["id"], {"os-migrateLive": {
                "host": target, "block_migration": "auto"}})
            self._wait_for_migration_status(server, ["completed"])
            server = self._wait_for_state_change(server, "ACTIVE")
            self.assertEqual(target, server["OS-EXT-SRV-ATTR:host"])
            [vbd] = self.volume_vbds(server)
            self.assertTrue(vbd["currently_attached"])
            self.assertEqual([address], self.pbd_hosts(), "the source kept the volume's PBD")
        self.assertTrue(self.same(data, self.read_vdi(self.volume_vbds(server)[0]["VDI"], MIB)))

        self.assertRaises(client.OpenStackApiException, self.api.post_server_action, server["id"],
                          {"os-migrateLive": {"host": "compute2", "block_migration": True}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute", server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual(["127.0.0.1"], self.pbd_hosts())
        self._delete_server(server)
        self.assertNoVolumeStorage()
        self.assertHostClean()
        self.assertTrue(self.same(data, lun_file.read_bytes()[:MIB]))


class VolumeSwapTest(_VolumeBase):
    """Cinder migrating an attached volume to another backend (an iSCSI LUN to an NFS file)
    calls swap_volume: the bytes are copied into the new volume, which takes the old one's
    device; the old LUN is only read, and its SR goes."""

    NFS_EXPORT = "127.0.0.1:/srv/cinder-nfs"

    def nfs_volume(self, volume_id: str, size: int) -> Path:
        path = Path(self.nfs_dir) / f"volume-{volume_id}"
        with open(path, "wb") as f:
            f.truncate(size)
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = {
            "driver_volume_type": "nfs",
            "data": {"export": self.NFS_EXPORT, "name": path.name, "format": "raw",
                     "access_mode": "rw", "encrypted": False}}
        return path

    def device_of(self, server: dict, sr_type: str) -> tuple[dict, str] | None:
        for vbd in self.vm_of(server)["VBDs"]:
            rec = self.api_x.VBD.get_record(vbd)
            if rec["VDI"] != "OpaqueRef:NULL" and \
                    self.api_x.SR.get_type(self.api_x.VDI.get_SR(rec["VDI"])) == sr_type:
                return rec, rec["userdevice"]
        return None

    def swap(self, server: dict, old: str, new: str) -> None:
        # the API lets only Cinder (the service role) swap, and only a volume it is migrating:
        # the fixture's SWAP_OLD_VOL is such a volume
        self.admin_api.put_server_volume(server["id"], old, new)

    def test_swap_an_iscsi_volume_for_an_nfs_one_on_a_running_server(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        old, lun_file = self.volume(volume_id=self.cinder.SWAP_OLD_VOL)
        new_file = self.nfs_volume(self.cinder.SWAP_NEW_VOL, 32 * MIB)
        self._attach_volume(server, old)
        [vbd] = self.volume_vbds(server)
        data = os.urandom(3 * MIB)
        self.write_through_xapi(vbd["VDI"], data)
        self.swap(server, old, self.cinder.SWAP_NEW_VOL)
        deadline = time.monotonic() + 30
        while self.device_of(server, "nfs") is None:
            self.assertLess(time.monotonic(), deadline, "the new volume never took the device")
            time.sleep(0.2)
        server = self._wait_for_state_change(server, "ACTIVE")
        rec, device = self.device_of(server, "nfs")
        self.assertEqual(vbd["userdevice"], device, "the new volume is not at the old device")
        self.assertTrue(rec["currently_attached"], "not hot-plugged back into the guest")
        self.assertTrue(self.same(data, new_file.read_bytes()[:len(data)]), "bytes not copied")
        self.assertTrue(self.same(data, lun_file.read_bytes()[:len(data)]), "the old LUN changed")
        self.assertEqual([], self.volume_srs(), "the old volume's SR stayed")
        self._delete_server(server)
        self.assertHostClean()
        self.assertEqual([new_file.name], sorted(p.name for p in Path(self.nfs_dir).iterdir()))

    def test_a_failed_copy_puts_the_old_volume_back(self):
        server = self._create_server(image_uuid=self.image, networks="none")
        old, _ = self.volume(volume_id=self.cinder.SWAP_OLD_VOL)
        self.nfs_volume(self.cinder.SWAP_NEW_VOL, 32 * MIB)
        self._attach_volume(server, old)
        [before] = self.volume_vbds(server)
        self.sim.faults.add("VDI.copy", "error", error=["SR_BACKEND_FAILURE_44", "",
                                                        "There is insufficient space", ""])
        try:
            self.swap(server, old, self.cinder.SWAP_NEW_VOL)
        except client.OpenStackApiException:
            pass  # the functional stack casts as calls: the compute's error may reach the API
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self.sim.faults.clear()
        [after] = self.volume_vbds(server)
        self.assertEqual((before["VDI"], before["userdevice"]), (after["VDI"], after["userdevice"]))
        self.assertTrue(after["currently_attached"])
        self.assertIsNone(self.device_of(server, "nfs"))
        self.assertEqual([], [r for r in self.api_x.SR.get_all_records().values()
                              if r["type"] == "nfs" and r["other_config"].get("nova_volume_sr")])
        self.assertIn("insufficient space", self.stdlog.logger.output)


class DeviceTaggingTest(_VolumeBase):
    """Tagged disks at boot and tagged volume attach: the guest finds the tags in the config
    drive (openstack/latest/meta_data.json ``devices``) with the Xen bus and the device's
    virtual block device number, and in the instance's device metadata after an attach."""

    def meta_data(self, server: dict) -> dict:
        import json
        import subprocess
        import tempfile
        vbd, _ = self.disk(server, "3")  # the config drive
        with tempfile.NamedTemporaryFile(suffix=".iso") as iso:
            iso.write(self.read_vdi(vbd["VDI"], 4 * MIB))
            iso.flush()
            out = subprocess.run(["isoinfo", "-R", "-i", iso.name, "-x",
                                  "/openstack/latest/meta_data.json"],
                                 check=True, capture_output=True).stdout
        return json.loads(out)

    def device_metadata(self, server: dict) -> list[dict]:
        from nova import context as nova_context
        from nova import objects
        inst = objects.Instance.get_by_uuid(nova_context.get_admin_context(), server["id"],
                                            expected_attrs=["device_metadata"])
        return [{"serial": d.serial, "tags": d.tags, "address": d.bus.address}
                for d in (inst.device_metadata.devices if inst.device_metadata else [])]

    def test_tags_at_boot_and_on_attach_reach_the_guest(self):
        tagged, _ = self.volume()
        self.api.microversion = "2.49"
        body = {"server": {"name": "tagged", "flavorRef": "1", "networks": "none",
                           "imageRef": self.image,
                           "config_drive": True,
                           "block_device_mapping_v2": [
                               {"boot_index": 0, "uuid": self.image, "source_type": "image",
                                "destination_type": "local"},
                               {"boot_index": -1, "uuid": tagged, "source_type": "volume",
                                "destination_type": "volume", "tag": "database"}]}}
        server = self._wait_for_state_change(self.api.post_server(body), "ACTIVE")
        xvde = str(202 << 8 | 4 << 4)  # volumes start at xvde (userdevice 4)
        self.assertEqual([{"type": "disk", "bus": "xen", "address": xvde, "serial": tagged,
                           "tags": ["database"]}], self.meta_data(server)["devices"])

        second, _ = self.volume()
        self.api.post_server_volume(server["id"], {"volumeAttachment": {"volumeId": second,
                                                                        "tag": "logs"}})
        self._wait_for_volume_attach(server["id"], second)
        tags = {d["serial"]: (d["tags"], d["address"]) for d in self.device_metadata(server)}
        self.assertEqual({tagged: (["database"], xvde),
                          second: (["logs"], str(202 << 8 | 1 << 4))}, tags)  # xvdb: free
        self.api.delete_server_volume(server["id"], second)
        self._wait_for_volume_detach(server["id"], second)
        self.assertEqual([tagged], [d["serial"] for d in self.device_metadata(server)])
        self._delete_server(server)
        self.assertNoVolumeStorage()
        self.assertHostClean()
