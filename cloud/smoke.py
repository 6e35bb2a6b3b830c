"""``scripts/cloud smoke``: what a new user does first, through the real clients.

With the ``clouds.yaml`` that ``up`` wrote, openstacksdk makes a tenant
network (VLAN on physnet1) and a subnet; the ``openstack`` CLI lists the
hypervisors (one per simulated host), boots two servers on that network and
checks the scheduler spread them, that each port is ACTIVE and bound to its
server's host and is in that host's dom0 OVSDB with the external_ids a
XenServer host sets (read over OVSDB's TCP port, as the agent reads it);
kills a nova-compute with SIGKILL in the middle of a snapshot and one in
the middle of a boot (xapisim holds a call while the process is killed),
starts each again and checks that nothing the cut-short operation made is
left, and that the snapshotted server is ACTIVE on its host again; then stop, start,
reboot, snapshot, a console URL, and delete, after which the ports are gone
from dom0.  Servers left by an earlier run that failed are deleted first.
Each step prints its wall time; any failure stops the run with exit
status 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from PIL import ImageChops

from xapisim import console_vnc

from . import computes, processes, resources, sim_control, vnc_client
from .control_plane import BIN, admin_connection
from .state import State

NET = "smoke-net"


class SmokeFailed(RuntimeError):
    pass


def openstack(state: State, *args: str, timeout: float = 300.0, output: bool = True,
              text_output: bool = False):
    """The ``openstack`` CLI with the cloud's clouds.yaml; its JSON output, if it has one
    (or its text, with ``text_output``)."""
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(state.root / "clouds.yaml"),
           "OS_CLOUD": "nova-xenapi"}
    fmt = ["-f", "json"] if output else []
    r = subprocess.run([str(BIN / "openstack"), *args, *fmt], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if r.returncode != 0:
        raise SmokeFailed(f"openstack {' '.join(args)}: {r.stderr.strip()[-2000:]}")
    if text_output:
        return r.stdout
    return json.loads(r.stdout) if output and r.stdout.strip() else None


def dom0_interfaces(host_index: int, port_id: str) -> list[dict]:
    """The Interface rows of dom0's OVSDB that carry ``port_id``, over OVSDB's TCP port."""
    r = subprocess.run(["ovs-vsctl", f"--db=tcp:{computes.host_address(host_index)}:6640",
                        "--format=json", "--columns=name,external_ids", "find", "Interface",
                        f"external_ids:iface-id={port_id}"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SmokeFailed(f"ovs-vsctl against dom0 {host_index + 1}: {r.stderr.strip()}")
    return [{"name": name, "external_ids": dict(ids[1])} for name, ids in json.loads(r.stdout)["data"]]


def _wait_status(state: State, server: str, status: str, timeout: float = 180.0,
                 accept_error: bool = False) -> dict:
    """The server as ``openstack server show`` gives it, once its status is ``status``
    (polled through openstacksdk in this process: a CLI run per poll costs a second of CPU)."""
    conn = admin_connection(state)
    deadline = time.monotonic() + timeout
    while True:
        s = conn.compute.get_server(server)
        if s.status == status:
            return openstack(state, "server", "show", server)
        if (s.status == "ERROR" and not accept_error) or time.monotonic() > deadline:
            raise SmokeFailed(f"server {server} is {s.status}, not {status}: {s.fault}")
        time.sleep(0.5)


def run(state: State) -> int:
    if not (state.root / "clouds.yaml").exists():
        print(f"cloud smoke: no cloud at {state.root}: run scripts/cloud up first", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    results: list[str] = []

    def step(what: str, fn, *args):
        t = time.monotonic()
        try:
            out = fn(*args)
        except SmokeFailed as exc:
            print(f"  FAILED  {what}: {exc}", flush=True)
            raise
        line = f"  ok      {what:<58} {time.monotonic() - t:6.1f} s"
        results.append(line)
        print(line, flush=True)
        return out

    _delete_leftovers(state)
    try:
        hosts = step("openstack hypervisor list", openstack, state, "hypervisor", "list")
        names = [h["Hypervisor Hostname"] for h in hosts]
        if len(names) < 2:
            raise SmokeFailed(f"expected a hypervisor per simulated host, got {names}")
        net_id = step("openstacksdk: network and subnet (VLAN on physnet1)", _network, state)
        servers = step("openstack server create x2 --wait (ACTIVE after Neutron plugs)",
                       _boot, state, net_id)
        step("the scheduler spread them over the hosts", _spread, state, servers)
        ports = step("ports ACTIVE, bound to their host, in that dom0's OVSDB", _ports, state, servers)
        step("ceilometer-polling on each host: cpu and memory of each server (XAPI's RRDs)",
             _telemetry, state, servers, len(names))
        first = servers[0]["id"]
        # the steps after this one go through the nova-compute killed and started again
        step(f"kill -9 {servers[0]['OS-EXT-SRV-ATTR:host']}'s nova-compute in VDI.snapshot: "
             "ACTIVE after, no snapshot VDI left",
             _crash_mid_snapshot, state, servers[0], len(names))
        step("kill -9 nova-compute in VM.create: ERROR after, nothing left once deleted",
             _crash_mid_boot, state, net_id, len(names))
        step("openstack server stop", _action, state, first, "stop", "SHUTOFF")
        step("openstack server start", _action, state, first, "start", "ACTIVE")
        step("openstack server reboot --wait", _action, state, first, "reboot", "ACTIVE")
        step("openstack server image create --wait (snapshot)", _snapshot, state, first)
        step("openstack console url show --novnc: nova-novncproxy shows the guest's console",
             _console, state, first)
        step("openstack server delete --wait x2", _delete, state, servers)
        step("the ports left dom0's OVSDB", _ports_gone, ports)
    except (SmokeFailed, subprocess.TimeoutExpired) as exc:
        print(f"cloud smoke: FAILED after {time.monotonic() - t0:.1f} s: {exc}", file=sys.stderr)
        return 1
    print(f"cloud smoke: passed, {len(results)} steps in {time.monotonic() - t0:.1f} s")
    return 0


def _delete_leftovers(state: State) -> None:
    conn = admin_connection(state)
    for server in conn.compute.servers(all_projects=True, name="^smoke"):
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=180)
    for image in [*conn.image.images(name="smoke-snap"), *conn.image.images(name="smoke-crash")]:
        conn.image.delete_image(image)


def _network(state: State) -> str:
    conn = admin_connection(state)
    net = conn.network.find_network(NET) or conn.network.create_network(
        name=NET, provider_network_type="vlan", provider_physical_network="physnet1")
    if not list(conn.network.subnets(network_id=net.id)):
        conn.network.create_subnet(network_id=net.id, name=f"{NET}-v4", ip_version=4,
                                   cidr="10.11.12.0/24")
    return net.id


def _boot(state: State, net_id: str) -> list[dict]:
    openstack(state, "server", "create", "--image", resources.IMAGE, "--flavor", resources.FLAVOR,
              "--network", net_id, "--min", "2", "--max", "2", "--wait", "smoke")
    servers = openstack(state, "server", "list", "--name", "^smoke")
    return [_wait_status(state, s["ID"], "ACTIVE") for s in servers]


def _spread(state: State, servers: list[dict]) -> None:
    hosts = {s["OS-EXT-SRV-ATTR:host"] for s in servers}
    if len(hosts) != len(servers):
        raise SmokeFailed(f"both servers on {hosts}")


def _telemetry(state: State, servers: list[dict], hosts: int, timeout: float = 90.0) -> None:
    """Every server's samples in its host's ceilometer-polling (its Prometheus export): the
    agent found the instance through Nova and measured it with nova_xenapi's inspector."""
    deadline = time.monotonic() + timeout
    wanted = {s["id"] for s in servers}
    while True:
        seen: dict[str, set[str]] = {}
        for i in range(hosts):
            port = state.port(f"{computes.compute_name(i)}-ceilometer")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                for meter, label in (("ceilometer_cpu{", "cpu"),
                                     ("ceilometer_memory_usage{", "memory")):
                    if line.startswith(meter):
                        for sid in wanted:
                            if f'{label}="{sid}"' in line and float(line.rsplit(" ", 1)[1]) > 0:
                                seen.setdefault(sid, set()).add(label)
        if all(seen.get(sid) == {"cpu", "memory"} for sid in wanted):
            return
        if time.monotonic() > deadline:
            raise SmokeFailed(f"ceilometer samples after {timeout:.0f} s: {seen} of {sorted(wanted)}")
        time.sleep(2)


def _ports(state: State, servers: list[dict]) -> list[tuple[int, str]]:
    found = []
    for s in servers:
        host = s["OS-EXT-SRV-ATTR:host"]
        index = int(host.rsplit("-", 1)[1]) - 1
        for port in openstack(state, "port", "list", "--server", s["id"], "--long"):
            p = openstack(state, "port", "show", port["ID"])
            if p["status"] != "ACTIVE" or p["binding_host_id"] != host:
                raise SmokeFailed(f"port {p['id']}: {p['status']} on {p['binding_host_id']}")
            rows = dom0_interfaces(index, p["id"])
            if len(rows) != 1:
                raise SmokeFailed(f"port {p['id']} is {len(rows)} times in dom0 {index + 1}'s OVSDB")
            ids = rows[0]["external_ids"]
            want = {"attached-mac": p["mac_address"], "iface-status": "active", "iface-id": p["id"]}
            if any(ids.get(k) != v for k, v in want.items()) or not ids.get("xs-vm-uuid"):
                raise SmokeFailed(f"dom0 interface {rows[0]['name']} has external_ids {ids}")
            found.append((index, p["id"]))
    return found


def _kill_and_start(state: State, name: str, hosts: int, before_start=None, conn=None) -> None:
    """SIGKILL nova-compute ``name`` at once (an operation of it is being held: no CLI run
    before the kill), then start it again and wait until it reports in."""
    pid = processes.running(state, name)
    if pid is None:
        raise SmokeFailed(f"{name} is not running")
    conn = conn or admin_connection(state)

    def heartbeat() -> str:
        rows = list(conn.compute.services(host=name, binary="nova-compute"))
        return str(rows[0].updated_at) if rows else ""
    before = heartbeat()
    os.kill(pid, signal.SIGKILL)
    while processes.running(state, name) is not None:
        time.sleep(0.1)
    if before_start is not None:
        before_start()
    computes.start_computes(state, hosts)
    deadline = time.monotonic() + 120
    while heartbeat() == before:  # the new process has reported in (not the old heartbeat)
        if processes.running(state, name) is None:
            raise SmokeFailed(f"{name} exited after the restart:\n{processes.log_tail(state, name)}")
        if time.monotonic() > deadline:
            raise SmokeFailed(f"{name} did not report in after the restart")
        time.sleep(2)
    computes.wait_for_computes(state, hosts)


def _crash_mid_snapshot(state: State, server: dict, hosts: int) -> None:
    """nova-compute dies while XAPI takes the snapshot (xapisim holds ``VDI.snapshot`` for a
    while, and finishes it after the caller is gone, as xapi does). After the restart Nova
    clears the task and the driver's start-up sweep removes the snapshot (leftovers.py)."""
    conn = admin_connection(state)
    with sim_control.Control(state, hosts) as sim:
        sim.add_fault({"match": "VDI.snapshot", "action": "delay", "seconds": 8})
        openstack(state, "server", "image", "create", "--name", "smoke-crash", server["id"])
        sim.wait_fired()
        # xapi finishes the snapshot after its caller died; the compute starts again once it
        # has (one that starts sooner does not see it: docs/reliability.md)
        _kill_and_start(state, server["OS-EXT-SRV-ATTR:host"], hosts, lambda: (
            sim.clear_faults(), sim.wait_until(lambda: sim.vdis(lambda r: r["is_a_snapshot"]),
                                               "snapshot VDI")), conn)
        deadline = time.monotonic() + 60
        while (s := conn.compute.get_server(server["id"])).task_state:
            if time.monotonic() > deadline:
                raise SmokeFailed(f"the server kept task state {s.task_state}")
            time.sleep(0.5)
        if s.status != "ACTIVE" or s.compute_host != server["OS-EXT-SRV-ATTR:host"]:
            raise SmokeFailed(f"after the restart the server is {s.status} on {s.compute_host}")
        snaps = sim.vdis(lambda r: r["is_a_snapshot"])
        if snaps:
            raise SmokeFailed(f"snapshot VDIs left: {snaps}")
    for image in openstack(state, "image", "list", "--name", "smoke-crash"):
        openstack(state, "image", "delete", image["ID"], output=False)


def _crash_mid_boot(state: State, net_id: str, hosts: int) -> None:
    """nova-compute dies while XAPI makes the VM (xapisim finishes ``VM.create`` after the
    caller is gone). Nova's start-up sets the server to ERROR; deleting it removes the VM
    and every disk made for it."""
    conn = admin_connection(state)
    with sim_control.Control(state, hosts) as sim:
        # long enough to read the host and kill it; it ends before the restart is done
        sim.add_fault({"match": "VM.create", "action": "delay", "seconds": 10})
        server = openstack(state, "server", "create", "--image", resources.IMAGE, "--flavor",
                           resources.FLAVOR, "--network", net_id, "smoke-crash")
        sim.wait_fired()
        host = conn.compute.get_server(server["id"]).compute_host
        if not host:
            raise SmokeFailed("the server is being built but Nova names no host for it")
        name = conn.compute.get_server(server["id"]).instance_name
        _kill_and_start(state, host, hosts, lambda: (
            sim.clear_faults(), sim.wait_until(lambda: sim.vms(
                lambda r: r["name_label"] == name), "VM")), conn)
        _wait_status(state, server["id"], "ERROR", accept_error=True)
        openstack(state, "server", "delete", "--wait", server["id"], output=False)
        left = sim.vms(lambda r: r["name_label"].startswith(name)) + sim.vdis(
            lambda r: r["other_config"].get("nova_instance_uuid") == server["id"])
        if left:
            raise SmokeFailed(f"the deleted server left {left}")


def _action(state: State, server: str, action: str, status: str) -> None:
    args = ["server", action, server] + (["--wait"] if action == "reboot" else [])
    openstack(state, *args, output=False)
    _wait_status(state, server, status)


def _snapshot(state: State, server: str) -> None:
    image = openstack(state, "server", "image", "create", "--name", "smoke-snap", "--wait", server)
    if image["status"] != "active":
        raise SmokeFailed(f"snapshot is {image['status']}")
    openstack(state, "image", "delete", image["id"], output=False)


def _console(state: State, server: str) -> None:
    """The console URL a user gets, opened as noVNC does; the screen must be the guest's
    console text (xapisim's VNC server draws it), as ``openstack console log show`` reads it."""
    url = openstack(state, "console", "url", "show", "--novnc", server)["url"]
    if "token=" not in urllib.parse.unquote(url):
        raise SmokeFailed(f"console URL without a token: {url}")
    viewer = vnc_client.Viewer(url)
    try:
        _, screen = viewer.screen()
    except (ConnectionError, OSError) as exc:
        raise SmokeFailed(f"nova-novncproxy gave no screen: {exc}") from exc
    finally:
        viewer.close()
    text = openstack(state, "console", "log", "show", server, output=False, text_output=True)
    if "login:" not in text or ImageChops.difference(screen, console_vnc.render(text)).getbbox():
        raise SmokeFailed("the console's screen is not the guest's console text")


def _delete(state: State, servers: list[dict]) -> None:
    openstack(state, "server", "delete", "--wait", *[s["id"] for s in servers], output=False)


def _ports_gone(ports: list[tuple[int, str]]) -> None:
    for index, port in ports:
        if dom0_interfaces(index, port):
            raise SmokeFailed(f"port {port} is still in dom0 {index + 1}'s OVSDB")
