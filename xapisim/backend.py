"""One simulated pool: its database, its hosts and their dom0 directories.

Like moto's backends, this holds state and behaviour and never sees wire
types.  A fresh backend looks like a fresh XenServer 8 install (see
``inventory``).  Hosts are reached at their own loopback addresses; the one
named in ``pool.master`` answers API calls, the others say ``HOST_IS_SLAVE``.
"""
from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .datamodel import NULL_REF
from .errors import XapiError
from .faults import Faults
from .store import Store
from .values import now


@dataclass
class HostConfig:
    address: str
    hostname: str
    memory_mib: int = 65536
    cpus: int = 16
    dom0_memory_mib: int = 4096


@dataclass
class SimConfig:
    """What a simulated pool looks like when it is created."""

    password: str = "password"
    hosts: list[HostConfig] = field(default_factory=lambda: [HostConfig("127.0.0.1", "xs-host-1")])
    sr_type: str = "ext"
    sr_size_gib: int = 512
    extra_srs: list[tuple[str, int]] = field(default_factory=list)  # (type, GiB)
    auth_failure_delay: float = 5.0
    boot_delay: float = 0.0  # seconds a VM start takes
    other_pools: list[list[HostConfig]] = field(default_factory=list)  # more pools, as standalone
    plugin_dirs: list[str] = field(default_factory=list)  # installed in every dom0's plugins dir
    # where a running guest "sees" the disks hot-plugged into it: <dir>/<vm-uuid>/<device>
    # (what lets a compute VM's image handler write to a VDI through a local block device)
    device_dir: str | None = None
    # an NFS SR every host of the first pool sees (its default SR), as for live migration
    shared_sr: str | None = None
    # how fast a live migration copies memory (0: at once) and how long the switch-over pauses
    migration_mib_per_s: float = 0.0
    migration_pause_s: float = 0.0
    # a real ovsdb-server and ovs-vswitchd in each dom0 (dom0_ovs.py) instead of simulated tools
    real_ovs: bool = False
    # NFS exports a client may introduce an nfs SR from: "server:/path" -> local directory
    # (nfs_sr.py); no NFS server runs
    nfs_exports: dict[str, str] = field(default_factory=dict)


@dataclass
class HostRuntime:
    ref: str
    config: HostConfig
    dom0_root: Path


class Backend:
    """A pool's state: the store plus per-host runtime data."""

    def __init__(self, config: SimConfig, state_dir: Path, faults: Faults | None = None,
                 db_name: str = "db.json") -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self.db_name = db_name  # the pool's database file in state_dir
        self.saved_gen: int | None = None  # the store generation last saved there
        self.world = None  # the Simulator holding every pool (set by it)
        self.store = Store()
        self.faults = faults or Faults()
        self.hosts: dict[str, HostRuntime] = {}
        self.event_registrations: dict[str, dict] = {}
        self.migrations: list[dict] = []  # live migrations that left this pool (see migrate.py)
        self._domid = 0
        self._domid_lock = threading.Lock()
        from . import disks, guest_agent
        self.disks = disks.DiskStore(self)
        self.agents = guest_agent.Agents()  # the simulated guest agents of its running VMs

    # -- hosts -----------------------------------------------------------
    @property
    def pool_ref(self) -> str:
        # the one pool row, read without the store's lock: every call asks (is_master)
        return next(iter(self.store.tables["pool"]))

    @property
    def master_ref(self) -> str:
        return self.store.get("pool", self.pool_ref)["master"]

    def is_master(self, host_ref: str) -> bool:
        return host_ref == self.master_ref

    def master_address(self) -> str:
        return self.store.get("host", self.master_ref)["address"]

    def host_by_address(self, address: str) -> str | None:
        for ref, rt in self.hosts.items():
            if rt.config.address == address:
                return ref
        return None

    def dom0_root(self, host_ref: str) -> Path:
        return self.hosts[host_ref].dom0_root

    def next_domid(self) -> int:
        with self._domid_lock:
            self._domid += 1
            return self._domid

    # -- sessions --------------------------------------------------------
    def login(self, host_ref: str, uname: str, pwd: str, originator: str, pool: bool = False) -> str:
        if not self.is_master(host_ref) and not pool:
            raise XapiError("HOST_IS_SLAVE", self.master_address())
        if uname != "root" or not hmac.compare_digest(pwd.encode(), self.config.password.encode()):
            time.sleep(self.config.auth_failure_delay)
            raise XapiError("SESSION_AUTHENTICATION_FAILED", uname,
                            "Authentication failure")
        store = self.store
        with store.lock:
            ref = store.create("session", {
                "this_host": host_ref, "this_user": NULL_REF, "last_active": now(),
                "pool": pool, "is_local_superuser": True, "auth_user_name": uname,
                "originator": originator, "validation_time": now(),
                "rbac_permissions": [],
            })
            store.private[ref]["secret"] = True
            return ref

    def internal_session(self, host_ref: str, originator: str) -> str:
        """A pool session xapi makes for itself (e.g. the one migrate_receive hands out)."""
        with self.store.lock:
            ref = self.store.create("session", {
                "this_host": host_ref, "this_user": NULL_REF, "last_active": now(), "pool": True,
                "is_local_superuser": True, "auth_user_name": "root", "originator": originator,
                "validation_time": now(), "rbac_permissions": []})
            self.store.private[ref]["secret"] = True
            return ref

    def session_valid(self, ref: str) -> bool:
        return self.store.exists("session", ref)

    def session_is_pool(self, ref: str) -> bool:
        return bool(self.store.tables["session"].get(ref, {}).get("pool"))

    def touch_session(self, ref: str) -> None:
        priv = self.store.private.get(ref)
        if priv is not None:
            priv["last_seen"] = time.monotonic()

    def logout(self, ref: str) -> None:
        store = self.store
        with store.lock:
            if store.exists("session", ref):
                for task in list(store.get("session", ref)["tasks"]):
                    if store.exists("task", task):
                        from .tasks import _destroy
                        if store.get("task", task)["status"] != "pending":
                            _destroy(store, task)
                store.destroy("session", ref)
            self.event_registrations.pop(ref, None)
            store.cond.notify_all()

    # -- allowed operations ---------------------------------------------
    def refresh(self, cls: str, ref: str) -> None:
        """Recompute ``allowed_operations`` of an object after a change."""
        from .messages import lifecycle
        lifecycle.refresh(self, cls, ref)
