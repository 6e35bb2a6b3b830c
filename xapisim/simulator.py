"""A running simulator: pools of hosts, their listeners, faults and persistence.

``Simulator`` is what both ``xapisim serve`` and tests use: it builds (or
loads) a pool, starts one HTTP(S) listener per host on that host's loopback
address, and stops them again.  In-process use::

    with Simulator(SimConfig(password="pw"), state_dir) as sim:
        session = XenAPI.Session(sim.url)
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from pathlib import Path

from . import inventory, persistence, tasks
from .backend import Backend, HostConfig, HostRuntime, SimConfig
from .faults import Faults
from .http_front import HostServer, serve_in_thread

LOG = logging.getLogger(__name__)
FLUSH_INTERVAL = 1.0  # seconds between saves of a changed database while running


def host_configs(n: int, memory_mib: int = 65536, cpus: int = 16,
                 first_address: str = "127.0.0.1") -> list[HostConfig]:
    base = first_address.rsplit(".", 1)
    return [HostConfig(f"{base[0]}.{int(base[1]) + i}", f"xs-host-{i + 1}", memory_mib, cpus)
            for i in range(n)]


class Simulator:
    """Every simulated pool, their hosts' listeners, faults and persistence.

    ``backend`` is the first pool (the one ``url`` points at); ``backends``
    holds all of them.  Pools change as hosts join and leave: the simulator
    is the "network" that lets a host find another pool's master and moves a
    host's listener to its new pool.
    """

    def __init__(self, config: SimConfig | None = None, state_dir: Path | str | None = None,
                 port: int = 0, tls: bool = False, certificate: Path | None = None,
                 ssh_port: int | None = None, http_port: int | None = None) -> None:
        self.config = config or SimConfig()
        self.ssh_port = ssh_port  # None: no SSH; 0: any free port (the same on every host)
        self.ssh_servers: list = []
        self.switches: list = []  # real Open vSwitch per dom0 (config.real_ovs)
        self.ssh_fingerprint = ""
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="xapisim-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        # with TLS, xapi also answers plain HTTP (port 80 on a real host, unless https_only):
        # None for no such listener, 0 for any free port (the same on every host)
        self.http_port = http_port
        self.tls = tls
        self.certificate = certificate
        self.faults = Faults()
        self.servers: list[HostServer] = []
        self._ssl_context = None
        self._stop = threading.Event()
        self._gc_thread: threading.Thread | None = None
        self.backend = self._new_backend(self.config, "db.json")
        self.backends: list[Backend] = [self.backend]
        if persistence.load(self.backend):
            self._restore_hosts(self.backend)
            for path in sorted(self.state_dir.glob("pool-*.json")):
                b = self._new_backend(self._config_for([]), path.name)
                persistence.load(b)
                self._restore_hosts(b)
                self.backends.append(b)
        else:
            inventory.build(self.backend, self.config.sr_type)
            for hosts in self.config.other_pools:
                self.add_pool(hosts)

    def _config_for(self, hosts: list[HostConfig]) -> SimConfig:
        return dataclasses.replace(self.config, hosts=hosts, other_pools=[])

    def _new_backend(self, config: SimConfig, db_name: str) -> Backend:
        b = Backend(config, self.state_dir, self.faults, db_name=db_name)
        b.world = self
        return b

    def _all_host_configs(self) -> list[HostConfig]:
        return list(self.config.hosts) + [h for pool in self.config.other_pools for h in pool]

    def _restore_hosts(self, backend: Backend) -> None:
        store = backend.store
        for ref, rec in store.tables["host"].items():
            hc = next((h for h in self._all_host_configs() if h.address == rec["address"]),
                      HostConfig(rec["address"], rec["hostname"]))
            root = self.state_dir / "hosts" / rec["address"] / "dom0"
            backend.hosts[ref] = HostRuntime(ref, hc, root)

    # -- the pools -------------------------------------------------------
    def add_pool(self, hosts: list[HostConfig], host_uuids: dict[str, str] | None = None) -> Backend:
        """A new pool of freshly installed hosts (a host keeps its uuid when given)."""
        b = self._new_backend(self._config_for(hosts), "")
        inventory.build(b, self.config.sr_type)
        for ref in b.store.all("host"):
            uuid = (host_uuids or {}).get(b.store.get("host", ref)["address"])
            if uuid:
                b.store.change_uuid("host", ref, uuid)
        b.db_name = f"pool-{b.store.get('pool', b.pool_ref)['uuid']}.json"
        self.backends.append(b)
        return b

    def remove_pool(self, backend: Backend) -> None:
        self.backends.remove(backend)
        (self.state_dir / backend.db_name).unlink(missing_ok=True)

    def host_at(self, address: str) -> tuple[Backend, str] | None:
        """The pool and host record answering at ``address``, if any host does."""
        for b in self.backends:
            ref = b.host_by_address(address)
            if ref is not None:
                return b, ref
        return None

    def rehome(self, address: str, backend: Backend, host_ref: str) -> None:
        for server in self.servers:
            if server.server_address[0] == address:
                server.rehome(backend, host_ref)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Simulator:
        """Listeners, dom0 switches and SSH for every host; if any fails to start, what did
        start is stopped again before the error goes up."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Simulator:
        ctx = None
        hosts = [(b, ref, rt) for b in self.backends for ref, rt in b.hosts.items()]
        if self.tls:
            from .tls import ensure_certificate, server_context
            pem = self.certificate or ensure_certificate(
                self.state_dir / "xapi-ssl.pem", [rt.config.address for _, _, rt in hosts])
            self.certificate = pem
            ctx = server_context(pem)
        port = self.port
        for backend, ref, rt in hosts:
            server = HostServer((rt.config.address, port), backend, ref, self, ctx)
            if port == 0:
                port = server.server_address[1]
            self.servers.append(server)
            serve_in_thread(server)
        self.port = port
        if self.tls and self.http_port is not None:
            http_port = self.http_port
            for backend, ref, rt in hosts:
                server = HostServer((rt.config.address, http_port), backend, ref, self, None)
                http_port = http_port or server.server_address[1]
                self.servers.append(server)
                serve_in_thread(server)
            self.http_port = http_port
        if self.config.real_ovs:
            from .dom0_ovs import Dom0OpenVSwitch
            for backend, ref, rt in hosts:
                switch = Dom0OpenVSwitch(rt.dom0_root).start()
                self.switches.append(switch)
                store = backend.store
                for pif in store.all("PIF"):
                    p = store.get("PIF", pif)
                    if p["host"] == ref and store.exists("network", p["network"]):
                        switch.add_pif_bridge(store.get("network", p["network"])["bridge"], p["device"])
        if self.ssh_port is not None:
            self._start_ssh([rt.config.address for _, _, rt in hosts])
        self._gc_thread = threading.Thread(target=self._gc_loop, daemon=True, name="xapisim-gc")
        self._gc_thread.start()
        self._flush_thread = threading.Thread(target=self._flush_loop, daemon=True,
                                              name="xapisim-flush")
        self._flush_thread.start()
        return self

    def _start_ssh(self, addresses: list[str]) -> None:
        from .ssh_front import SSHServer, fingerprint, load_host_key
        key = load_host_key(self.state_dir / "ssh_host_rsa_key")
        self.ssh_fingerprint = fingerprint(key)
        port = self.ssh_port
        for address in addresses:
            server = SSHServer(address, port, key, self.config.password,
                               lambda a=address: self.dom0_of(a))
            port = server.port
            self.ssh_servers.append(server)
        self.ssh_port = port

    def dom0_of(self, address: str) -> Path:
        """The directory standing for the dom0 of the host at ``address``."""
        found = self.host_at(address)
        if found is None:
            raise OSError(f"no host at {address}")
        backend, ref = found
        return backend.dom0_root(ref)

    def _flush_loop(self) -> None:
        """Save each pool whose database changed, every ``FLUSH_INTERVAL`` seconds."""
        while not self._stop.wait(FLUSH_INTERVAL):
            for b in list(self.backends):
                if b.store.gen != b.saved_gen:
                    try:
                        persistence.save(b)
                    except OSError as e:  # a full disk must not stop the simulator
                        LOG.error("could not save %s: %s", b.db_name, e)

    def _gc_loop(self) -> None:
        while not self._stop.wait(30.0):
            for b in list(self.backends):
                tasks.gc(b.store)

    def stop(self) -> None:
        """Stop every listener and save the pools; a second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        if getattr(self, "_flush_thread", None) is not None:
            self._flush_thread.join()
        for s in self.servers:
            s.shutdown()
            s.server_close()
        self.servers.clear()
        for ssh in self.ssh_servers:
            ssh.close()
        self.ssh_servers.clear()
        for switch in self.switches:
            switch.stop()
        self.switches.clear()
        for b in self.backends:
            b.agents.close()
            persistence.save(b)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- facts for clients -----------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url_of(self, address: str) -> str:
        return f"{self.scheme}://{address}:{self.port}"

    @property
    def url(self) -> str:
        return self.url_of(self.backend.master_address())

    @property
    def host_urls(self) -> list[str]:
        """Every host of every pool (the first pool's master first)."""
        return [self.url_of(rt.config.address) for b in self.backends for rt in b.hosts.values()]

    def pool_url(self, index: int) -> str:
        """The master of the ``index``-th pool."""
        return self.url_of(self.backends[index].master_address())

    def crash_host(self, address: str) -> None:
        """The host at ``address`` fails: it stops answering, its metrics say it is not live,
        and its VMs stay Running in the pool's database, as after a real crash."""
        found = self.host_at(address)
        if found is None:
            raise ValueError(f"no host at {address}")
        backend, ref = found
        with backend.store.lock:
            backend.store.set("host_metrics", backend.store.get("host", ref)["metrics"], live=False)
        self.faults.killed_hosts.add(address)
        if backend.master_address() == address:
            from .messages.pool import ha_failover
            ha_failover(backend, address)

    @property
    def migrations(self) -> list[dict]:
        """Every live migration so far (kind, vm uuid, source and destination host refs,
        duration_s, downtime_s, disks_copied), oldest first."""
        return [m for b in self.backends for m in b.migrations]

    def summary(self) -> dict:
        store = self.backend.store
        with store.lock:
            vms = [r for r in store.tables["VM"].values()
                   if not r["is_a_template"] and not r["is_control_domain"]]
            return {"hosts": len(store.tables["host"]), "vms": len(vms),
                    "vdis": len(store.tables["VDI"]), "vbds": len(store.tables["VBD"]),
                    "vifs": len(store.tables["VIF"]), "tasks": len(store.tables["task"]),
                    "sessions": len(store.tables["session"]), "generation": store.gen,
                    "time": time.time()}
