"""A running simulator: pools of hosts, their listeners, faults and persistence.

``Simulator`` is what both ``xapisim serve`` and tests use: it builds (or
loads) a pool, starts one HTTP(S) listener per host on that host's loopback
address, and stops them again.  In-process use::

    with Simulator(SimConfig(password="pw"), state_dir) as sim:
        session = XenAPI.Session(sim.url)
"""
from __future__ import annotations

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


def host_configs(n: int, memory_mib: int = 65536, cpus: int = 16,
                 first_address: str = "127.0.0.1") -> list[HostConfig]:
    base = first_address.rsplit(".", 1)
    return [HostConfig(f"{base[0]}.{int(base[1]) + i}", f"xs-host-{i + 1}", memory_mib, cpus)
            for i in range(n)]


class Simulator:
    def __init__(self, config: SimConfig | None = None, state_dir: Path | str | None = None,
                 port: int = 0, tls: bool = False, certificate: Path | None = None) -> None:
        self.config = config or SimConfig()
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="xapisim-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.tls = tls
        self.certificate = certificate
        self.faults = Faults()
        self.backend = Backend(self.config, self.state_dir, self.faults)
        self.servers: list[HostServer] = []
        self._stop = threading.Event()
        self._gc_thread: threading.Thread | None = None
        if not persistence.load(self.backend):
            inventory.build(self.backend, self.config.sr_type)
        else:
            self._restore_hosts()

    def _restore_hosts(self) -> None:
        store = self.backend.store
        for ref, rec in store.tables["host"].items():
            hc = next((h for h in self.config.hosts if h.address == rec["address"]),
                      HostConfig(rec["address"], rec["hostname"]))
            root = self.state_dir / "hosts" / rec["address"] / "dom0"
            self.backend.hosts[ref] = HostRuntime(ref, hc, root)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Simulator:
        ctx = None
        if self.tls:
            from .tls import ensure_certificate, server_context
            pem = self.certificate or ensure_certificate(
                self.state_dir / "xapi-ssl.pem", [h.config.address for h in self.backend.hosts.values()])
            self.certificate = pem
            ctx = server_context(pem)
        port = self.port
        for ref, rt in self.backend.hosts.items():
            server = HostServer((rt.config.address, port), self.backend, ref, self, ctx)
            if port == 0:
                port = server.server_address[1]
            self.servers.append(server)
            serve_in_thread(server)
        self.port = port
        self._gc_thread = threading.Thread(target=self._gc_loop, daemon=True, name="xapisim-gc")
        self._gc_thread.start()
        return self

    def _gc_loop(self) -> None:
        while not self._stop.wait(30.0):
            tasks.gc(self.backend.store)

    def stop(self) -> None:
        self._stop.set()
        for s in self.servers:
            s.shutdown()
            s.server_close()
        self.servers.clear()
        persistence.save(self.backend)
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
        return [self.url_of(rt.config.address) for rt in self.backend.hosts.values()]

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
