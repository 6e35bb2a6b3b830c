"""A real in-process Nova (API, conductor, scheduler, placement, compute) on a running xapisim.

Nova's own ``_IntegratedTestBase`` starts the services; the compute service
loads our driver the way nova-compute does (``compute_driver =
xenapi.XenAPIDriver``), and the driver talks to a simulator over real
sockets.  Glance is Nova's in-memory fixture, extended to keep the bytes a
snapshot uploads so they can be booted again, or with ``REAL_GLANCE`` a real
Glance API process (``glance_server``) that Nova and the dom0 plugins both
reach over HTTP.  Nova's ``TestCase`` runs
under ``unittest``/stestr, not pytest.  The functional tests and the demo
both stand on this class.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import fixtures
import XenAPI
from nova.tests.functional import integrated_helpers

from nova_xenapi import conf as _xenserver_opts  # noqa: F401 - registers [xenserver]
from nova_xenapi.dom0 import PLUGIN_DIR
from nova_xenapi.testing.secret_watch import SecretWatch
from nova_xenapi.testing.xapi_objects import diskless_vm
from xapisim import SimConfig, Simulator, host_configs
from xapisim.backend import Backend, HostConfig

PASSWORD = "functional-pw"
GLANCE_TOKEN = "functional-token"  # what the API requests carry, so Nova passes it to Glance
# Nova's thread pools say at INFO that they shut down, after each test's log capture has
# ended, so those lines would reach the console for every test
logging.getLogger("nova.thread_pool_factory").setLevel(logging.WARNING)
IMAGE_BYTES = 4 * 1024 * 1024
INTEGRATION_BRIDGE = "br-int"


def image_data(seed: int = 7, size: int = IMAGE_BYTES) -> bytes:
    """Distinct, non-zero bytes so a round trip through the SR is checkable."""
    block = bytes((i * seed + seed) % 251 + 1 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def prepare_host(url: str) -> None:
    """What xenapi-bootstrap does to a fresh host for neutron: the integration bridge network."""
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "functional-setup")
    try:
        if not s.xenapi.network.get_by_name_label(INTEGRATION_BRIDGE):
            s.xenapi.network.create({"name_label": INTEGRATION_BRIDGE, "name_description": "",
                                     "other_config": {}, "MTU": "1500", "tags": []})
    finally:
        s.xenapi.session.logout()


class XenAPIFunctionalBase(integrated_helpers._IntegratedTestBase):
    """Nova with compute_driver = xenapi.XenAPIDriver against xapisim."""

    ADMIN_API = True
    microversion = "2.90"
    HOST_MEMORY_MIB = 32768
    CONNECTION_CONCURRENT = 5
    #: run the real xenapi-bootstrap over SSH (slower); otherwise the host is prepared directly,
    #: with the plugins in place and the integration bridge made, as bootstrap leaves them
    BOOTSTRAP = False
    IMAGE_HANDLER = "vdi_remote_stream"
    #: a real Glance API process for the whole class instead of Nova's in-memory fixture
    REAL_GLANCE = False
    SR_TYPE = "ext"
    #: SSH into the dom0s, /images linked into the SR and root trust between the dom0s, as
    #: resize and migration need
    DOM0_SSH = False
    #: standalone hosts (each its own pool) beside the first, for a second nova-compute
    STANDALONE_HOSTS = 0
    #: hosts in the first pool (127.0.0.1 is its master); standalone hosts come after them
    POOL_HOSTS = 1
    #: the address of the pool member the compute manages (its URL redirects to the master);
    #: None for the master
    COMPUTE_ADDRESS: str | None = None
    SR_MATCHING_FILTER = "default-sr:true"
    #: an NFS SR shared by the first pool's hosts, its default SR (for live migration)
    SHARED_SR: str | None = None
    #: how fast the simulator's live migrations copy memory (0: at once)
    MIGRATION_MIB_PER_S = 0.0
    #: seconds between the pool reconciler's rounds (0: no thread; tests call it themselves)
    POOL_RECONCILE_INTERVAL = 0
    #: an NFS export ("server:/path") clients may introduce nfs SRs from; kept in
    #: ``self.nfs_dir`` (xapisim's nfs_exports: no NFS server runs)
    NFS_EXPORT: str | None = None
    glance_server = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if cls.REAL_GLANCE:
            from nova_xenapi.testing.glance_server import GlanceServer
            cls._glance_dir = tempfile.mkdtemp(prefix="nova-xenapi-glance-")
            cls.glance_server = GlanceServer(cls._glance_dir).start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.glance_server is not None:
            cls.glance_server.stop()
            shutil.rmtree(cls._glance_dir, True)
        super().tearDownClass()

    def useFixture(self, fixture):
        from nova.tests import fixtures as nova_fixtures
        if self.REAL_GLANCE and isinstance(fixture, nova_fixtures.GlanceFixture):
            return None  # Nova talks to glance_server through [glance] api_servers
        return super().useFixture(fixture)

    def setUp(self) -> None:
        self._watch_secrets()
        self.state_dir = tempfile.mkdtemp(prefix="nova-xenapi-ft-")
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.device_dir = os.path.join(self.state_dir, "guest-devices")
        self.nfs_dir = os.path.join(self.state_dir, "nfs-export")
        os.mkdir(self.nfs_dir)
        first = self.POOL_HOSTS + 1
        others = [[HostConfig(f"127.0.0.{n + first}", f"xs-host-{n + first}",
                              self.HOST_MEMORY_MIB, 8)] for n in range(self.STANDALONE_HOSTS)]
        config = SimConfig(password=PASSWORD,
                           hosts=host_configs(self.POOL_HOSTS, self.HOST_MEMORY_MIB, 8),
                           shared_sr=self.SHARED_SR, migration_mib_per_s=self.MIGRATION_MIB_PER_S,
                           other_pools=others,
                           auth_failure_delay=0.0, device_dir=self.device_dir, sr_type=self.SR_TYPE,
                           nfs_exports={self.NFS_EXPORT: self.nfs_dir} if self.NFS_EXPORT else {},
                           plugin_dirs=[] if self.BOOTSTRAP else [str(PLUGIN_DIR)])
        ssh = self.BOOTSTRAP or self.DOM0_SSH
        self.sim = Simulator(config, self.state_dir, ssh_port=0 if ssh else None).start()
        self.addCleanup(self.sim.stop)
        if self.BOOTSTRAP:
            self.bootstrap_output = self._bootstrap()
        else:
            prepare_host(self.sim.url)  # networks are pool-wide
            for n in range(self.STANDALONE_HOSTS):
                prepare_host(self.sim.url_of(f"127.0.0.{n + first}"))
        if self.DOM0_SSH:
            self._prepare_dom0s()
        self.flags(compute_driver="xenapi.XenAPIDriver")
        self.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"),
                   group="wsgi")
        self.flags(connection_url=self.sim.url_of(self.COMPUTE_ADDRESS) if self.COMPUTE_ADDRESS
                   else self.sim.url, connection_password=PASSWORD, check_host=False,
                   image_handler=self.IMAGE_HANDLER, ovs_integration_bridge=INTEGRATION_BRIDGE,
                   connection_concurrent=self.CONNECTION_CONCURRENT,
                   sr_matching_filter=self.SR_MATCHING_FILTER,
                   pool_reconcile_interval=self.POOL_RECONCILE_INTERVAL,
                   group="xenserver")
        if self.REAL_GLANCE:
            self.flags(api_servers=[self.glance_server.url], group="glance")
            self._send_a_token()
        super().setUp()
        # stop the simulator while Nova's log capture still holds its messages
        self.addCleanup(self.sim.stop)
        if self.REAL_GLANCE:
            self._keep_the_token()
        else:
            self._keep_uploaded_bytes()
        self.xapi = XenAPI.Session(self.sim.url)
        self.xapi.xenapi.login_with_password("root", PASSWORD, "2.21", "functional-check")
        self.addCleanup(self.xapi.xenapi.session.logout)
        self.compute_vm = self._make_compute_vm()

    def _watch_secrets(self) -> None:
        """Every log record of the test, DEBUG included, is searched for the password, each
        XAPI session xapisim hands out, and what ``self.secret_watch.add`` is given."""
        watch = self.secret_watch = SecretWatch()
        watch.add(PASSWORD)
        watch.add(GLANCE_TOKEN)
        login = Backend.login

        def watched_login(backend, *args, **kwargs):
            ref = login(backend, *args, **kwargs)
            watch.add(ref)
            return ref
        self.useFixture(fixtures.MonkeyPatch("xapisim.backend.Backend.login", watched_login))
        watch.install()

        def check() -> None:
            watch.remove()
            if watch.found:
                self.fail("secrets in the log:\n" + "\n".join(watch.found[:10]))
        self.addCleanup(check)

    def _prepare_dom0s(self) -> None:
        from nova_xenapi.testing import dom0_trust
        addresses = [h.address for h in self.sim.config.hosts] + \
            [h.address for pool in self.sim.config.other_pools for h in pool]
        for address in addresses:
            s = XenAPI.Session(self.sim.url_of(address))
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "functional-setup")
            try:
                sr = s.xenapi.pool.get_default_SR(s.xenapi.pool.get_all()[0])
                sr_uuid = s.xenapi.SR.get_uuid(sr)
            finally:
                s.xenapi.session.logout()
            root = self.sim.dom0_of(address)
            dom0_trust.link_images(root, root / "var/run/sr-mount" / sr_uuid)
            for source in addresses:
                dom0_trust.trust(self.sim, source, address)
        self.flags(dom0_ssh_port=self.sim.ssh_port, group="xenserver")

    def start_compute(self, name: str, address: str):
        """Another nova-compute, whose driver manages the host at ``address``."""
        self.flags(connection_url=self.sim.url_of(address), group="xenserver")
        try:
            self.computes[name] = self.start_service("compute", host=name)
        finally:
            self.flags(connection_url=self.sim.url, group="xenserver")
        return self.computes[name]

    def _make_compute_vm(self) -> str:
        """A running VM standing for the one nova-compute runs in, as on a real host."""
        x = self.xapi.xenapi
        vm = diskless_vm(x, "nova-compute", 1 << 30)
        x.VM.start(vm, False, False)
        uuid = x.VM.get_uuid(vm)
        path = os.path.join(self.state_dir, "hypervisor-uuid")
        with open(path, "w") as f:
            f.write(uuid + "\n")
        self.useFixture(fixtures.MonkeyPatch("nova_xenapi.this_vm.HYPERVISOR_UUID", path))
        self.useFixture(fixtures.MonkeyPatch("nova_xenapi.this_vm.DEVICE_DIR",
                                             os.path.join(self.device_dir, uuid)))
        return vm

    def _bootstrap(self) -> str:
        """xenapi-bootstrap, as an operator runs it (independent compute: no compute VM here)."""
        from nova_xenapi.bootstrap import cli
        pw = os.path.join(self.state_dir, "password")
        with open(pw, "w") as f:
            f.write(PASSWORD)
        out = io.StringIO()
        args = cli.build_parser().parse_args([
            "--url", self.sim.url, "--password-file", pw, "--ssh-port", str(self.sim.ssh_port),
            "--host-key-fingerprint", self.sim.ssh_fingerprint,
            "--integration-bridge", INTEGRATION_BRIDGE,
            "--nova-conf", os.path.join(self.state_dir, "nova.conf")])
        code = cli.run(args, out)
        if code != 0:
            raise RuntimeError("xenapi-bootstrap failed:\n" + out.getvalue())
        return out.getvalue()

    # ----------------------------------------------------------- Glance
    def _send_a_token(self) -> None:
        """API requests carry X-Auth-Token as behind Keystone, so Nova has one to pass to Glance
        (keystoneauth refuses a request without one; this Glance accepts any)."""
        from nova.tests.functional.api import client as api_client
        real = api_client.TestOpenStackClient.api_request

        def api_request(client, relative_uri, check_response_status=None, strip_version=False,
                        **kwargs):
            kwargs.setdefault("headers", {}).setdefault("X-Auth-Token", GLANCE_TOKEN)
            return real(client, relative_uri, check_response_status, strip_version, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            "nova.tests.functional.api.client.TestOpenStackClient.api_request", api_request))

    def _keep_the_token(self) -> None:
        """Nova's stand-in for keystone's context middleware drops the token: keep it."""
        from nova.api import auth
        stub = auth.NovaKeystoneContext._create_context

        def create_context(env, **kwargs):
            ctx = stub(env, **kwargs)
            ctx.auth_token = env.get("HTTP_X_AUTH_TOKEN")
            return ctx

        self.useFixture(fixtures.MonkeyPatch("nova.api.auth.NovaKeystoneContext._create_context",
                                             staticmethod(create_context)))

    def _keep_uploaded_bytes(self) -> None:
        fixture = self.glance
        real_update = fixture.update

        def update(context, image_id, metadata, data=None, purge_props=False):
            if data is not None:
                fixture._imagedata[image_id] = data.read() if hasattr(data, "read") else b"".join(data)
                metadata = dict(metadata, size=len(fixture._imagedata[image_id]), status="active")
            return real_update(context, image_id, metadata, purge_props=purge_props)

        fixture.update = update

    def make_image(self, data: bytes, disk_format: str = "raw", **props) -> str:
        container = disk_format if disk_format in ("ami", "aki", "ari") else "bare"
        meta = {"name": f"img-{disk_format}", "status": "active", "visibility": "public",
                "container_format": container, "disk_format": disk_format, "size": len(data),
                "min_ram": 0, "min_disk": 0, "properties": props}
        return self.glance.create(None, meta, data=io.BytesIO(data))["id"]

    def make_vhd_image(self, layers: list[dict[int, bytes]], size: int, **props) -> str:
        """A direct_vhd image in the real Glance: a tar of the VHD chain built from ``layers``."""
        from nova_xenapi.testing import vhd_images
        paths = vhd_images.chain(Path(self.state_dir) / f"chain-{len(os.listdir(self.state_dir))}",
                                 size, layers)
        image_id = vhd_images.create_image(self.glance_server.url, name="vhd-chain", **props)
        vhd_images.upload(self.glance_server.url, image_id, vhd_images.tarball(paths))
        return image_id

    def make_image_bigger_than(self, gib: int) -> str:
        """A small qcow2 image whose virtual disk is ``gib`` + 1 GiB: only its header says so."""
        path = os.path.join(self.state_dir, f"big-{gib}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, f"{gib + 1}G"], check=True)
        with open(path, "rb") as f:
            return self.make_image(f.read(), disk_format="qcow2")

    # ---------------------------------------------------------- waiting
    # Nova's helpers look every 0.5 s; looking every POLL seconds saves a quarter second on
    # average at each wait of every test. Their patience (10 looks, 5 s) assumes a fake
    # driver: a boot here runs plugins and image transfers, and the test command runs
    # several such stacks at once, so a wait lasts at least PATIENCE seconds
    POLL = 0.05
    PATIENCE = 30.0

    def _wait_for_server_parameter(self, server, expected_params, max_retries=10, api=None,
                                   wait_for_fault_key=True):
        api = api or getattr(self, "admin_api", self.api)
        # as in Nova's helper: ERROR is recorded before its fault, which tests want to read
        want_fault = wait_for_fault_key and expected_params.get("status") == "ERROR"
        deadline = time.monotonic() + max(max_retries * 0.5, self.PATIENCE)
        while True:
            server = api.get_server(server["id"])
            if all(server[k] == v for k, v in expected_params.items()) and \
                    (not want_fault or "fault" in server):
                return server
            if time.monotonic() > deadline:
                self.fail(f"Wait for state change failed, expected_params={expected_params}, "
                          f"server={server}, wait_for_fault={want_fault}")
            time.sleep(self.POLL)

    def _wait_until_deleted(self, server):
        from nova.tests.functional.api import client as api_client
        initially_in_error = server.get("status") == "ERROR"
        deadline = time.monotonic() + self.PATIENCE
        try:
            while time.monotonic() < deadline:
                server = self.api.get_server(server["id"])
                if not initially_in_error and server["status"] == "ERROR":
                    self.fail("Server went to error state instead of disappearing.")
                time.sleep(self.POLL)
            self.fail("Server failed to delete.")
        except api_client.OpenStackApiNotFoundException:
            return

    # --------------------------------------------------------- the host
    @property
    def api_x(self):
        return self.xapi.xenapi

    def vm_of(self, server: dict) -> dict:
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        refs = self.api_x.VM.get_by_name_label(name)
        self.assertEqual(1, len(refs), f"VMs named {name}")
        return self.api_x.VM.get_record(refs[0])

    def leftovers(self) -> dict[str, list[str]]:
        """Objects a Nova instance could have left on the host."""
        vms = [r["name_label"] for ref, r in self.api_x.VM.get_all_records().items()
               if not r["is_a_template"] and not r["is_control_domain"] and ref != self.compute_vm]
        vbds = [r["device"] for r in self.api_x.VBD.get_all_records().values()
                if r["VM"] == self.compute_vm]
        records = self.api_x.VDI.get_all_records().values()
        parents = {r["sm_config"].get("vhd-parent") for r in records}
        vdis = [r["name_label"] for r in records
                if "nova_instance_uuid" in r["other_config"] or r["is_a_snapshot"]
                or (not r["managed"] and r["uuid"] not in parents)]  # an orphaned base copy
        tasks = [r["name_label"] for r in self.api_x.task.get_all_records().values()]
        vtpms = self.api_x.VTPM.get_all()  # a VTPM goes with its VM
        return {k: v for k, v in (("VM", vms), ("VDI", vdis), ("task", tasks),
                                  ("compute VM VBD", vbds), ("VTPM", vtpms)) if v}

    def assertHostClean(self) -> None:
        self.assertEqual({}, self.leftovers())

    @property
    def driver(self):
        """The XenAPIDriver inside the running compute service."""
        return self.computes["compute"].manager.driver

    def disk(self, server: dict, userdevice: str = "0") -> tuple[dict, dict]:
        """(VBD record, VDI record) of a server's disk."""
        for vbd in self.vm_of(server)["VBDs"]:
            rec = self.api_x.VBD.get_record(vbd)
            if rec["userdevice"] == userdevice:
                return rec, self.api_x.VDI.get_record(rec["VDI"])
        raise AssertionError(f"no disk {userdevice}")

    def read_vdi(self, vdi_ref: str, length: int) -> bytes:
        """The first ``length`` bytes of a VDI, read through XAPI's /export_raw_vdi."""
        url = f"{self.sim.url}/export_raw_vdi?session_id={self.xapi._session}&vdi={vdi_ref}&format=raw"
        with urllib.request.urlopen(url) as resp:
            return resp.read(length)
