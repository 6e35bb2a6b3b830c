"""Fixtures: a running xapisim on loopback, and logged-in SDK / JSON-RPC clients.

Also keeps Nova's eventlet patching out of pytest's processes (below)."""
from __future__ import annotations

import json
import sys
import urllib.request

import pytest
import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm  # noqa: F401 - shared with the tests
from xapisim import SimConfig, Simulator, host_configs

PASSWORD = "secret-pw"


class _NoNovaPatchingHere:
    """Refuse, in pytest's processes, the modules that apply Nova's eventlet patching.

    ``tests.functional`` and ``nova.tests.functional`` patch eventlet when they
    are imported; inside pytest's xdist workers, with xapisim's threads and
    sockets about, that hangs the whole run with no output. A test that needs
    them belongs in tests/functional, which unittest runs.
    """

    REFUSED = ("tests.functional", "nova.tests.functional")

    def find_spec(self, fullname: str, path, target=None):
        if fullname in self.REFUSED:
            raise ImportError(
                f"{fullname} applies Nova's eventlet patching, which hangs pytest's "
                "processes: a test that imports it belongs in tests/functional "
                "(run by unittest, see scripts/test)")
        return None


sys.meta_path.insert(0, _NoNovaPatchingHere())


@pytest.fixture
def sim(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 16384, 8),
                       auth_failure_delay=0.05)
    with Simulator(config, tmp_path / "state") as s:
        yield s


@pytest.fixture(scope="module")
def rpc_sim():
    """One host shared by a module's tests of the wire."""
    with Simulator(SimConfig(password=PASSWORD, auth_failure_delay=0)) as s:
        yield s


@pytest.fixture(scope="module")
def rpc_session(rpc_sim):
    s = XenAPI.Session(rpc_sim.url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "wire-tests")
    yield s
    s.xenapi.session.logout()


@pytest.fixture
def xapi(sim):
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "tests")
    yield session
    try:
        session.xenapi.session.logout()
    except Exception:  # noqa: BLE001 - a test may have logged out already
        pass


def sdk_call(proxy, method: str, *args):
    """Call ``"VM.get_record"`` on an SDK ``session.xenapi`` proxy by its dotted name."""
    obj = proxy
    for part in method.split("."):
        obj = getattr(obj, part)
    return obj(*args)


class JsonRpc:
    """A minimal JSON-RPC client, as the Go/C#/Java SDKs speak it."""

    def __init__(self, url: str, version: str = "2.0") -> None:
        self.url = url + "/jsonrpc"
        self.version = version
        self.session = None
        self._id = 0

    def raw(self, method: str, params: list) -> dict:
        self._id += 1
        body = {"method": method, "params": params, "id": self._id}
        if self.version == "2.0":
            body["jsonrpc"] = "2.0"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    def call(self, method: str, *params):
        reply = self.raw(method, [self.session, *params] if self.session else list(params))
        err = reply.get("error")
        if err:
            if isinstance(err, dict):
                raise XenAPI.Failure([err["message"], *err["data"]])
            raise XenAPI.Failure(err)
        return reply["result"]


@pytest.fixture(params=["xmlrpc", "jsonrpc"])
def client(request, sim):
    """A callable ``c(method, *args)`` over either wire protocol, logged in."""
    if request.param == "xmlrpc":
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "tests")

        def call(method, *args):
            return sdk_call(s.xenapi, method, *args)
        call.protocol = "xmlrpc"
        call.session = s._session
        return call
    j = JsonRpc(sim.url)
    j.session = j.call("session.login_with_password", "root", PASSWORD, "2.21", "tests")

    def jcall(method, *args):
        return j.call(method, *args)
    jcall.protocol = "jsonrpc"
    jcall.session = j.session
    return jcall


@pytest.fixture
def world(tmp_path):
    """Two pools: a pool of two hosts (127.0.0.1 master, .2) and a standalone host (.3)."""
    from xapisim.backend import HostConfig
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 8192, 4), auth_failure_delay=0.01,
                       other_pools=[[HostConfig("127.0.0.3", "xs-host-3", 8192, 4)]])
    with Simulator(config, tmp_path / "state") as s:
        yield s


def login(url: str) -> XenAPI.Session:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "tests")
    return s


def local_sr(x, host: str) -> str:
    """The host's own storage SR (not the tools ISO SR)."""
    return [r for r, v in x.SR.get_all_records().items()
            if v["type"] != "iso" and any(x.PBD.get_host(p) == host for p in v["PBDs"])][0]




@pytest.fixture
def plugged(tmp_path):
    """One host whose dom0 has nova-xenapi's plugins installed; yields (sim, session.xenapi)."""
    from nova_xenapi.dom0 import PLUGIN_DIR
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01,
                       plugin_dirs=[str(PLUGIN_DIR)])
    with Simulator(config, tmp_path / "plugged") as s:
        yield s, login(s.url).xenapi


@pytest.fixture(scope="session")
def glance_api(tmp_path_factory):
    """A real Glance API process (file store, no Keystone) shared by the tests of one worker."""
    from nova_xenapi.testing.glance_server import GlanceServer
    with GlanceServer(tmp_path_factory.mktemp("glance")) as server:
        yield server
