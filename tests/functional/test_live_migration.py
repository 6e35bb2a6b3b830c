"""Live migration through Nova's API: in a pool on shared storage, and block migration
(Storage XenMotion) between hosts that share nothing; abort; what is refused.

Each nova-compute manages one XAPI host.  Shared storage: a two-host pool
with an NFS SR as its default SR (``xapisim --shared-sr nfs``); block
migration: two standalone hosts, each its own pool.
"""
from __future__ import annotations

import time
import urllib.request

import XenAPI
from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base


def _guests(x) -> list[dict]:
    return [r for r in x.VM.get_all_records().values()
            if not r["is_a_template"] and not r["is_control_domain"]
            and r["name_label"] != "nova-compute"]


class _LiveBase(base.XenAPIFunctionalBase):
    SECOND = "127.0.0.2"

    def setUp(self) -> None:
        super().setUp()
        self.start_compute("compute2", self.SECOND)

    def _boot(self) -> tuple[dict, bytes]:
        data = base.image_data(11)
        server = self._create_server(image_uuid=self.make_image(data), networks="none",
                                     az="nova:compute")
        return server, data

    def _migrate(self, server: dict, host: str, block: str = "auto") -> None:
        self.api.post_server_action(server["id"], {"os-migrateLive": {
            "host": host, "block_migration": block}})


class SharedStorageLiveMigrationTest(_LiveBase):
    POOL_HOSTS = 2
    SHARED_SR = "nfs"

    def _host(self, address: str) -> str:
        return [h for h in self.api_x.host.get_all()
                if self.api_x.host.get_address(h) == address][0]

    def test_live_migrate_there_and_back_keeps_the_disks_in_place(self):
        server, data = self._boot()
        before = self.vm_of(server)
        disks = sorted(self.api_x.VBD.get_VDI(v) for v in before["VBDs"])
        for target, address in (("compute2", "127.0.0.2"), ("compute", "127.0.0.1")):
            self._migrate(server, target)
            self._wait_for_migration_status(server, ["completed"])
            server = self._wait_for_state_change(server, "ACTIVE")
            self.assertEqual(target, server["OS-EXT-SRV-ATTR:host"])
            rec = self.vm_of(server)
            self.assertEqual("Running", rec["power_state"])
            self.assertEqual(self._host(address), rec["resident_on"])
            self.assertEqual(self._host(address), rec["affinity"])
            self.assertEqual(disks, sorted(self.api_x.VBD.get_VDI(v) for v in rec["VBDs"]))
        self.assertEqual(data, self.read_vdi(self.disk(server)[0]["VDI"], len(data)))
        kinds = [m["kind"] for m in self.sim.migrations]
        self.assertEqual(["pool_migrate", "pool_migrate"], kinds)
        self.assertEqual(1, len(_guests(self.api_x)))  # nothing left behind
        self._delete_server(server)
        self.assertHostClean()

    def test_block_migration_inside_the_pool_moves_the_disks(self):
        server, data = self._boot()
        self._migrate(server, "compute2", block=True)
        self._wait_for_migration_status(server, ["completed"])
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
        rec = self.vm_of(server)
        self.assertEqual(self._host("127.0.0.2"), rec["resident_on"])
        self.assertEqual(["migrate_send"], [m["kind"] for m in self.sim.migrations])
        self.assertEqual(data, self.read_vdi(self.disk(server)[0]["VDI"], len(data)))
        self._delete_server(server)
        self.assertHostClean()


class SharedStorageFailureTest(_LiveBase):
    POOL_HOSTS = 2
    SHARED_SR = "nfs"

    def test_a_failed_step_leaves_the_server_active_on_the_source(self):
        server, _ = self._boot()
        for message, error in (
                ("VM.pool_migrate", ["HOST_NOT_ENOUGH_FREE_MEMORY", "1", "0"]),
                ("host.compute_free_memory", ["INTERNAL_ERROR", "injected"]),
                ("VM.set_affinity", ["INTERNAL_ERROR", "injected"])):
            with self.subTest(message=message):
                self.sim.faults.clear()
                self.sim.faults.add(message, "error", error=error)
                try:
                    self._migrate(server, "compute2")
                except client.OpenStackApiException:
                    pass  # refused by a pre-check before the move
                else:
                    self._wait_for_migration_status(server, ["error", "failed", "completed"])
                server = self._wait_for_state_change(server, "ACTIVE")
                self.sim.faults.clear()
                rec = self.vm_of(server)
                self.assertEqual("Running", rec["power_state"])
                if message == "VM.set_affinity":  # after the move: retried, and it is there
                    self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
                    self.assertEqual("127.0.0.2", self.api_x.host.get_address(rec["resident_on"]))
                    self.assertEqual(rec["resident_on"], rec["affinity"])
                    continue
                self.assertEqual("compute", server["OS-EXT-SRV-ATTR:host"])
                self.assertEqual("127.0.0.1", self.api_x.host.get_address(rec["resident_on"]))
                self.assertEqual(1, len(_guests(self.api_x)))


class LiveMigrationSweepTest(_LiveBase):
    POOL_HOSTS = 2
    SHARED_SR = "nfs"

    def test_a_fault_at_any_call_of_a_live_migration_leaves_one_consistent_server(self):
        server, _ = self._boot()
        self.sim.faults.start_recording()
        self._migrate(server, "compute2")
        self._wait_for_migration_status(server, ["completed"])
        server = self._wait_for_server_parameter(server, {"status": "ACTIVE",
                                                          "OS-EXT-STS:task_state": None})
        names = list(dict.fromkeys(self.sim.faults.stop_recording()))
        self.assertIn("VM.pool_migrate", names)
        for name in names:
            with self.subTest(fails=name):
                target = "compute" if server["OS-EXT-SRV-ATTR:host"] == "compute2" else "compute2"
                self.sim.faults.add(name, "error", error=["INTERNAL_ERROR", f"injected at {name}"])
                try:
                    self._migrate(server, target)
                except client.OpenStackApiException:
                    pass  # a pre-check failed and the API said so
                server = self._wait_for_server_parameter(
                    server, {"OS-EXT-STS:task_state": None}, max_retries=40)
                self.sim.faults.clear()
                self.assertEqual("ACTIVE", server["status"], server.get("fault"))
                rec = self.vm_of(server)
                self.assertEqual("Running", rec["power_state"])
                where = self.api_x.host.get_address(rec["resident_on"])
                expected = "127.0.0.1" if server["OS-EXT-SRV-ATTR:host"] == "compute" else "127.0.0.2"
                self.assertEqual(expected, where, f"Nova and XAPI disagree after {name} failed")
                self.assertEqual(1, len(_guests(self.api_x)))


class AbortLiveMigrationTest(_LiveBase):
    POOL_HOSTS = 2
    SHARED_SR = "nfs"
    MIGRATION_MIB_PER_S = 64  # a 512 MiB server takes about eight seconds to move

    def test_abort_leaves_the_server_active_on_the_source(self):
        server, _ = self._boot()
        self._migrate(server, "compute2")
        migration = self._wait_for_migration_status(server, ["running"])
        for _ in range(100):  # until the XAPI task exists
            if any(r["name_label"] == "Async.VM.pool_migrate"
                   for r in self.api_x.task.get_all_records().values()):
                break
            time.sleep(0.05)
        self.admin_api.api_delete(f"/servers/{server['id']}/migrations/{migration['id']}")
        self._wait_for_migration_status(server, ["cancelled"])
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute", server["OS-EXT-SRV-ATTR:host"])
        rec = self.vm_of(server)
        self.assertEqual("Running", rec["power_state"])
        self.assertEqual("127.0.0.1", self.api_x.host.get_address(rec["resident_on"]))
        self.assertEqual([], self.sim.migrations)
        self._delete_server(server)
        self.assertHostClean()


class BlockLiveMigrationTest(_LiveBase):
    STANDALONE_HOSTS = 1

    def setUp(self) -> None:
        super().setUp()
        self.other = XenAPI.Session(self.sim.url_of(self.SECOND))
        self.other.xenapi.login_with_password("root", base.PASSWORD, "2.21", "functional-check")
        self.addCleanup(self.other.xenapi.session.logout)

    def test_block_migration_between_pools_moves_the_bytes_and_leaves_nothing(self):
        server, data = self._boot()
        self._migrate(server, "compute2")  # auto: different pools -> block migration
        self._wait_for_migration_status(server, ["completed"])
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute2", server["OS-EXT-SRV-ATTR:host"])
        (moved,) = _guests(self.other.xenapi)
        self.assertEqual("Running", moved["power_state"])
        self.assertEqual(server["id"], moved["other_config"]["nova_uuid"])
        root = [v for v in moved["VBDs"] if self.other.xenapi.VBD.get_userdevice(v) == "0"][0]
        vdi = self.other.xenapi.VBD.get_VDI(root)
        url = (f"{self.sim.url_of(self.SECOND)}/export_raw_vdi?session_id={self.other._session}"
               f"&vdi={vdi}&format=raw")
        with urllib.request.urlopen(url) as resp:
            self.assertEqual(data, resp.read(len(data)))
        self.assertEqual([], _guests(self.api_x))  # nothing left in the source pool
        self.assertEqual({}, self.leftovers())
        self._delete_server(server)
        self.assertEqual([], _guests(self.other.xenapi))

    def test_a_failed_storage_motion_leaves_nothing_on_either_side(self):
        server, _ = self._boot()
        vdis = set(self.other.xenapi.VDI.get_all())
        for message in ("host.migrate_receive", "VM.migrate_send"):
            with self.subTest(message=message):
                self.sim.faults.clear()
                self.sim.faults.add(message, "error", error=["SR_BACKEND_FAILURE_44", "",
                                                             "There is insufficient space"])
                self._migrate(server, "compute2")
                self._wait_for_migration_status(server, ["error", "failed"])
                server = self._wait_for_state_change(server, "ACTIVE")
                self.sim.faults.clear()
                self.assertEqual("compute", server["OS-EXT-SRV-ATTR:host"])
                self.assertEqual("Running", self.vm_of(server)["power_state"])
                self.assertEqual([], _guests(self.other.xenapi))
                self.assertEqual(vdis, set(self.other.xenapi.VDI.get_all()))

    def test_a_fault_at_any_call_of_a_block_migration_leaves_one_server_and_no_orphan(self):
        """The sweep of the Storage XenMotion path: every XAPI call that one block migration
        between two pools makes (on either pool) fails once in turn.  After each, the server
        is ACTIVE where Nova says it is, Running there, and the other pool holds neither a VM
        nor a VDI of it."""
        server, _ = self._boot()
        pools = {"compute": self.api_x, "compute2": self.other.xenapi}
        empty = {"compute2": set(self.other.xenapi.VDI.get_all())}  # each pool without the server
        self.sim.faults.start_recording()
        self._migrate(server, "compute2")
        self._wait_for_migration_status(server, ["completed"])
        server = self._wait_for_server_parameter(server, {"status": "ACTIVE",
                                                          "OS-EXT-STS:task_state": None})
        names = list(dict.fromkeys(self.sim.faults.stop_recording()))
        empty["compute"] = set(self.api_x.VDI.get_all())
        self.assertIn("VM.migrate_send", names)
        self.assertIn("host.migrate_receive", names)
        for name in names:
            with self.subTest(fails=name):
                here = server["OS-EXT-SRV-ATTR:host"]
                self.sim.faults.add(name, "error", error=["INTERNAL_ERROR", f"injected at {name}"])
                try:
                    self._migrate(server, "compute" if here == "compute2" else "compute2")
                except client.OpenStackApiException:
                    pass  # a pre-check failed and the API said so
                server = self._wait_for_server_parameter(
                    server, {"OS-EXT-STS:task_state": None}, max_retries=40)
                self.sim.faults.clear()
                self.assertEqual("ACTIVE", server["status"], server.get("fault"))
                here = server["OS-EXT-SRV-ATTR:host"]
                there = "compute" if here == "compute2" else "compute2"
                guests = _guests(pools[here])
                self.assertEqual(1, len(guests), f"Nova has the server on {here}; after {name} "
                                                 f"failed, XAPI there has {guests} and the other "
                                                 f"pool {_guests(pools[there])}")
                (rec,) = guests
                self.assertEqual(server["id"], rec["other_config"]["nova_uuid"])
                self.assertEqual("Running", rec["power_state"])
                self.assertEqual([], _guests(pools[there]), f"a VM left after {name} failed")
                self.assertEqual(empty[there], set(pools[there].VDI.get_all()),
                                 f"a VDI left after {name} failed")
                self.assertEqual([], [r["name_label"] for r in pools[there].task.get_all_records().values()],
                                 f"a task left after {name} failed")
        self._delete_server(server)
        self.assertEqual([], _guests(self.other.xenapi))

    def test_shared_storage_migration_between_pools_is_refused_clearly(self):
        server, _ = self._boot()
        # the destination's pre-check refuses it, and the scheduler has nowhere else to go
        with self.assertRaises(client.OpenStackApiException):
            self._migrate(server, "compute2", block=False)
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("compute", server["OS-EXT-SRV-ATTR:host"])
        self.assertIn("needs both hosts in one XAPI pool", self.stdlog.logger.output)
        self.assertEqual(1, len(_guests(self.api_x)))
