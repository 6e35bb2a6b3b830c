"""A real Open vSwitch in a simulated dom0, and what XenServer's vif hotplug script does with it.

With ``SimConfig.real_ovs`` each host's dom0 runs Debian's ``ovsdb-server``
and ``ovs-vswitchd`` as processes of the simulator: the database in the
dom0's ``/etc/openvswitch/conf.db``, sockets in a short run directory (unix
socket paths are limited to 108 bytes) that the dom0's
``/var/run/openvswitch`` links to.  ``ovs-vswitchd`` runs with
``--enable-dummy=override``: every datapath is Open vSwitch's userspace
"dummy" one, so no kernel device is made.  That is what lets several dom0s
share one kernel: the netdev datapath would make a kernel tap device named
after each bridge, and two ``br-int`` bridges would clash.  OpenFlow,
OVSDB and the ports and interfaces are all real.  The dom0's ``ovs-vsctl``,
``ovs-ofctl`` and ``ovs-appctl`` are then the real tools pointed at that
dom0 (``dom0lib/dom0_net.py``), and an ``ovs-vsctl set-manager
ptcp:6640:<address>`` makes OVSDB listen there, as on a real host.

``vif_plugged``/``vif_unplugged`` are XenServer's ``/etc/xensource/scripts/vif``
for Open vSwitch: a plugged VIF of domain D, device N is the port
``vif<D>.<N>`` on its network's bridge (made if missing, as xapi makes
internal bridges on demand), with the ``external_ids`` a real host writes:
``attached-mac``, ``iface-id`` (from ``other_config:nicira-iface-id``),
``iface-status``, ``xs-vif-uuid``, ``xs-network-uuid``, ``xs-vm-uuid``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
#: dom0 root -> its running switch
SWITCHES: dict[str, Dom0OpenVSwitch] = {}


class OVSMissing(RuntimeError):
    pass


def _tool(name: str) -> str:
    for d in ("/usr/sbin", "/usr/bin", "/sbin"):
        if Path(d, name).exists():
            return str(Path(d, name))
    raise OVSMissing(f"{name} not found: real_ovs needs Open vSwitch (Debian's openvswitch-switch)")


class Dom0OpenVSwitch:
    """ovsdb-server and ovs-vswitchd for one dom0."""

    def __init__(self, dom0_root: Path) -> None:
        self.dom0_root = Path(dom0_root)
        self.rundir = Path(tempfile.mkdtemp(prefix="xsovs-"))
        self.db = self.dom0_root / "etc/openvswitch/conf.db"
        self.logdir = self.dom0_root / "var/log/openvswitch"
        self.procs: list[subprocess.Popen] = []

    @property
    def db_socket(self) -> Path:
        return self.rundir / "db.sock"

    def env(self) -> dict[str, str]:
        return {"OVS_RUNDIR": str(self.rundir), "OVS_DBDIR": str(self.db.parent),
                "OVS_LOGDIR": str(self.logdir)}

    def start(self) -> Dom0OpenVSwitch:
        """ovsdb-server then ovs-vswitchd; if either fails, neither is left running."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Dom0OpenVSwitch:
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.logdir.mkdir(parents=True, exist_ok=True)
        if not self.db.exists():
            subprocess.run([_tool("ovsdb-tool"), "create", str(self.db), str(SCHEMA)], check=True,
                           capture_output=True)
        link = self.dom0_root / "var/run/openvswitch"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(self.rundir)
        self.procs.append(subprocess.Popen([
            _tool("ovsdb-server"), str(self.db), f"--remote=punix:{self.db_socket}",
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            f"--unixctl={self.rundir / 'ovsdb-server.ctl'}",
            f"--log-file={self.logdir / 'ovsdb-server.log'}", "-vconsole:off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env()}))
        self._wait(lambda: self.db_socket.exists(), "ovsdb-server")
        self.vsctl("--no-wait", "init")
        self.procs.append(subprocess.Popen([
            _tool("ovs-vswitchd"), f"unix:{self.db_socket}", "--enable-dummy=override",
            "--disable-system", f"--unixctl={self.rundir / 'ovs-vswitchd.ctl'}",
            f"--log-file={self.logdir / 'ovs-vswitchd.log'}", "-vconsole:off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env()}))
        self._wait(lambda: (self.rundir / "ovs-vswitchd.ctl").exists(), "ovs-vswitchd")
        SWITCHES[str(self.dom0_root)] = self
        return self

    def add_pif_bridge(self, bridge: str, device: str) -> None:
        """A physical interface's bridge (xenbr0 with eth0), as xapi's networkd makes at boot."""
        self.vsctl("--", "--may-exist", "add-br", bridge, "--", "--may-exist", "add-port", bridge, device)

    def _wait(self, ready, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise OVSMissing(f"{what} of {self.dom0_root} did not start; see {self.logdir}")
            time.sleep(0.02)

    def vsctl(self, *args: str) -> str:
        r = subprocess.run([_tool("ovs-vsctl"), f"--db=unix:{self.db_socket}", "--timeout=10", *args],
                           capture_output=True, text=True, env={**self.env(), "PATH": "/usr/bin:/bin"})
        if r.returncode != 0:
            raise RuntimeError(f"ovs-vsctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def stop(self) -> None:
        SWITCHES.pop(str(self.dom0_root), None)
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        link = self.dom0_root / "var/run/openvswitch"
        if link.is_symlink():
            link.unlink()
        shutil.rmtree(self.rundir, ignore_errors=True)


def port_name(domid: int, device: str) -> str:
    return f"vif{domid}.{device}"


def vif_plugged(dom0_root: Path, vif: dict, vm: dict, network: dict) -> None:
    """Add a running VM's VIF to its bridge, as the vif hotplug script does (no-op without OVS)."""
    switch = SWITCHES.get(str(dom0_root))
    if switch is None:
        return
    port = port_name(vm["domid"], vif["device"])
    ids = {"attached-mac": vif["MAC"], "iface-status": "active", "xs-vif-uuid": vif["uuid"],
           "xs-network-uuid": network["uuid"], "xs-vm-uuid": vm["uuid"]}
    iface_id = vif["other_config"].get("nicira-iface-id")
    if iface_id:
        ids["iface-id"] = iface_id
    bridge = network["bridge"]
    switch.vsctl("--", "--may-exist", "add-br", bridge,
                 "--", "--may-exist", "add-port", bridge, port,
                 "--", "set", "Interface", port,
                 *[f'external_ids:{k}="{v}"' for k, v in ids.items()])


def vif_unplugged(dom0_root: Path, vif: dict, vm: dict) -> None:
    switch = SWITCHES.get(str(dom0_root))
    if switch is None or vm["domid"] < 0:
        return
    switch.vsctl("--", "--if-exists", "del-port", port_name(vm["domid"], vif["device"]))
