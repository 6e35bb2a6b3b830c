"""The simulated XenServer hosts and, for each, its nova-compute.

One ``xapisim serve`` process stands for N standalone XenServer hosts (each a
pool of its own, on 127.0.10.1, .2, ...), serving XAPI over HTTPS with its
self-signed certificate and SSH into each dom0.  Each host is prepared once by
the real ``xenapi-bootstrap``, as an operator would (independent compute: the
compute services are not in a VM on the host), which writes the
``[xenserver]`` section of that host's nova-compute config.  Then one
``nova-compute`` per host runs with ``compute_driver = xenapi.XenAPIDriver``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import configs, processes
from .control_plane import BIN
from .state import State

HOST_BASE = "127.0.10."
HOST_MEMORY_MIB = 16384
HOST_CPUS = 8


def host_address(i: int) -> str:
    return f"{HOST_BASE}{i + 1}"


def compute_name(i: int) -> str:
    return f"compute-{i + 1}"


def agent_conf(state: State, i: int) -> Path:
    return state.etc / "neutron" / f"{compute_name(i)}-ovs-agent.ini"


def _secret_file(state: State, name: str, value: str) -> Path:
    path = state.etc / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def start_xapisim(state: State, hosts: int) -> tuple[int, str]:
    """The simulated hosts; returns their SSH port and host key fingerprint."""
    password = _secret_file(state, "xenserver-password", state.secret("xenserver"))
    processes.start(state, "xapisim", [
        sys.executable, "-m", "xapisim", "serve", "--hosts", "1", "--standalone-hosts", str(hosts - 1),
        "--address", host_address(0), "--port", str(state.port("xapisim")), "--tls",
        "--http-port", str(state.port("xapisim-http")),
        "--password-file", str(password), "--ssh-port", str(state.port("xapisim-ssh")),
        "--ovs", "real", "--memory-mib", str(HOST_MEMORY_MIB), "--cpus", str(HOST_CPUS),
        "--state-dir", str(state.data / "xapisim")])
    found: list[str] = []

    def announced() -> bool:
        text = (state.logs / "xapisim.log").read_text(errors="replace")
        found[:] = re.findall(r"host key (SHA256:\S+)", text)[-1:]
        return bool(found) and all(
            processes.tcp_open(state.port("xapisim"), host_address(i))() for i in range(hosts))
    processes.wait_until(state, "xapisim", announced, 60)
    return state.port("xapisim-ssh"), found[0]


def _ca_file(state: State) -> Path:
    """The hosts' certificate alone (xapisim's PEM also holds its key), for ca_file."""
    pem = (state.data / "xapisim" / "xapi-ssl.pem").read_text()
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    path = state.etc / "xenserver-ca.pem"
    path.write_text("\n".join(certs) + "\n")
    return path


def bootstrap(state: State, i: int, ssh_port: int, fingerprint: str) -> Path:
    """xenapi-bootstrap for host i, once; returns that host's nova-compute config."""
    name = compute_name(i)
    conf = configs.nova_compute(state, name, host_address(i))
    configs.ovs_agent(state, name)
    if state.done(f"bootstrap-{name}"):
        return conf
    argv = [str(BIN / "xenapi-bootstrap"), "--url", f"https://{host_address(i)}:{state.port('xapisim')}",
            "--password-file", str(state.etc / "xenserver-password"), "--ca-file", str(_ca_file(state)),
            "--ssh-port", str(ssh_port), "--host-key-fingerprint", fingerprint,
            "--image-handler", "direct_vhd", "--nova-conf", str(conf),
            "--neutron-conf", str(agent_conf(state, i))]
    r = subprocess.run(argv, capture_output=True, text=True)
    with open(state.logs / f"bootstrap-{name}.log", "w") as log:
        log.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise RuntimeError(f"xenapi-bootstrap of {host_address(i)} failed:\n{r.stdout}{r.stderr}")
    state.mark(f"bootstrap-{name}")
    return conf


def start_computes(state: State, hosts: int) -> None:
    ssh_port, fingerprint = start_xapisim(state, hosts)
    for i in range(hosts):
        conf = bootstrap(state, i, ssh_port, fingerprint)
        name = compute_name(i)
        processes.start(state, name, [str(BIN / "nova-compute"), "--config-file", str(conf),
                                      "--log-file", str(state.logs / f"{name}.log")])
        # ceilometer's compute agent for this host, with nova_xenapi's inspector
        processes.start(state, f"{name}-ceilometer", [
            str(BIN / "ceilometer-polling-xenapi"), "--polling-namespaces", "compute",
            "--config-file", str(configs.ceilometer_polling(state, name, conf))])
        # the agent runs xenapi-root-helper (bootstrap's [agent] root_helper) from this venv
        processes.start(state, f"{name}-ovs-agent", [
            str(BIN / "neutron-openvswitch-agent"), "--config-file", str(agent_conf(state, i))],
            env={"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"})


def wait_for_computes(state: State, hosts: int, timeout: float = 180.0) -> None:
    """Until every nova-compute is up, its hypervisor mapped in a cell, and its OVS agent alive."""
    from .control_plane import admin_connection
    conn = admin_connection(state)
    wanted = {compute_name(i) for i in range(hosts)}
    deadline = time.monotonic() + timeout
    while True:
        up = {s.host for s in conn.compute.services() if s.binary == "nova-compute"
              and s.state == "up" and s.status == "enabled"}
        nodes = len(list(conn.compute.hypervisors()))
        agents = {a.host for a in conn.network.agents(binary="neutron-openvswitch-agent")
                  if a.is_alive}
        dead = [n for w in sorted(wanted) for n in (w, f"{w}-ovs-agent")
                if processes.running(state, n) is None]
        if dead:  # a heartbeat from before a restart still counts as up for a while
            raise processes.NotReady(f"{dead[0]} exited:\n{processes.log_tail(state, dead[0])}")
        if wanted <= up and nodes >= hosts and wanted <= agents:
            return
        if time.monotonic() > deadline:
            raise processes.NotReady(f"not up after {timeout:.0f} s: computes {sorted(up)}, "
                                     f"{nodes} hypervisors, OVS agents {sorted(agents)}")
        time.sleep(1)
