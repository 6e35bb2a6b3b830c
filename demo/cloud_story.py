"""``scripts/demo --cloud``: the demo's story through the real cloud instead of the in-process stack.

It brings up ``scripts/cloud`` (MariaDB, RabbitMQ, Keystone, Glance,
Placement, Nova and Neutron as separate services, a nova-compute and an OVS
agent per simulated XenServer host), unless one is already up in the state
directory, and drives servers through openstacksdk as a user would: a
concurrent boot, reboot, stop and start, pause, suspend and resume, rescue,
a snapshot and a boot from it (whose root disk must hold the image's bytes),
a console URL and the console log, and delete.  For each step it prints the
wall time and how many XAPI calls the hosts answered meanwhile (xapisim's
call record; the nova-computes' periodic tasks are counted too).  It reads
each host over XAPI, as an operator would with ``xe``, for its resources
before and after and for anything a server left behind.  A cloud the demo
started is stopped again at the end (kept for a look if a step failed).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import XenAPI

from cloud import __main__ as cloud_cli
from cloud import computes, processes, resources
from cloud.control_plane import admin_connection
from cloud.state import State
from nova_xenapi.transport import TLSPolicy, XmlRpcTransport


class StoryFailed(RuntimeError):
    pass


class Hosts:
    """XAPI sessions to each simulated host, with the hosts' CA, as root."""

    def __init__(self, state: State, count: int) -> None:
        self.state = state
        self.policy = TLSPolicy(ca_file=str(state.etc / "xenserver-ca.pem"))
        self.urls = [f"https://{computes.host_address(i)}:{state.port('xapisim')}" for i in range(count)]
        self.sessions = []
        for url in self.urls:
            s = XenAPI.Session(url, transport=XmlRpcTransport(url, self.policy, 60.0))
            s.xenapi.login_with_password("root", state.secret("xenserver"), "1.0", "nova-xenapi demo")
            self.sessions.append(s)

    def close(self) -> None:
        for s in self.sessions:
            s.xenapi.session.logout()

    def index_of(self, compute: str) -> int:
        return int(compute.rsplit("-", 1)[1]) - 1

    def resources(self) -> list[str]:
        out = []
        for i, s in enumerate(self.sessions):
            x = s.xenapi
            host = x.host.get_all()[0]
            metrics = x.host_metrics.get_record(x.host.get_metrics(host))
            sr = x.pool.get_default_SR(x.pool.get_all()[0])
            cached = sum("nova_image_cache" in r["other_config"]
                         for r in x.VDI.get_all_records().values())
            out.append(f"{computes.compute_name(i)}: memory free "
                       f"{int(x.host.compute_free_memory(host)) >> 20} of "
                       f"{int(metrics['memory_total']) >> 20} MiB, SR used "
                       f"{int(x.SR.get_physical_utilisation(sr)) >> 20} MiB, "
                       f"{cached} cached base images")
        return out

    def vm(self, compute: str, instance_uuid: str) -> dict:
        x = self.sessions[self.index_of(compute)].xenapi
        for rec in x.VM.get_all_records().values():
            if rec["other_config"].get("nova_uuid") == instance_uuid and not rec["is_a_snapshot"]:
                return rec
        raise StoryFailed(f"no VM for instance {instance_uuid} on {compute}")

    def root_disk(self, compute: str, vm: dict, length: int) -> bytes:
        """The first ``length`` bytes of the VM's disk 0, through the host's /export_raw_vdi."""
        i = self.index_of(compute)
        x = self.sessions[i].xenapi
        for vbd in vm["VBDs"]:
            rec = x.VBD.get_record(vbd)
            if rec["userdevice"] == "0":
                url = (f"{self.urls[i]}/export_raw_vdi?session_id={self.sessions[i]._session}"
                       f"&vdi={rec['VDI']}&format=raw")
                with urllib.request.urlopen(url, context=self._context()) as resp:
                    return resp.read(length)
        raise StoryFailed(f"VM {vm['name_label']} has no disk 0")

    def leftovers(self) -> dict[str, list[str]]:
        """What servers could leave on the hosts: VMs, their disks, snapshots, tasks."""
        left: dict[str, list[str]] = {}
        for i, s in enumerate(self.sessions):
            x = s.xenapi
            vms = [r["name_label"] for r in x.VM.get_all_records().values()
                   if not r["is_a_template"] and not r["is_control_domain"]]
            vdis = [r["name_label"] for r in x.VDI.get_all_records().values()
                    if "nova_instance_uuid" in r["other_config"] or r["is_a_snapshot"]]
            tasks = [r["name_label"] for r in x.task.get_all_records().values()]
            for kind, names in (("VM", vms), ("VDI", vdis), ("task", tasks)):
                if names:
                    left[f"{computes.compute_name(i)} {kind}"] = names
        return left

    def _context(self) -> ssl.SSLContext:
        return self.policy.context()

    def _calls(self, method: str) -> list[str]:
        req = urllib.request.Request(f"{self.urls[0]}/_xapisim/calls", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, context=self._context()) as resp:
            return json.loads(resp.read())["calls"]

    def count_calls(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        """fn's result and the XAPI calls all hosts answered while it ran (one xapisim serves
        them all, so one record counts every host)."""
        self._calls("POST")
        try:
            result = fn()
        finally:
            calls = self._calls("DELETE")
        return result, len(calls)


class Story:
    def __init__(self, state: State, hosts: Hosts, servers: int) -> None:
        self.state = state
        self.hosts = hosts
        self.servers = servers
        self.conn = admin_connection(state)
        self.report: list[str] = []

    def say(self, line: str = "") -> None:
        self.report.append(line)
        print(line, flush=True)

    def step(self, what: str, fn: Callable, *args):
        t = time.monotonic()
        result, calls = self.hosts.count_calls(lambda: fn(*args))
        self.say(f"  {what:<38} {time.monotonic() - t:7.2f} s {calls:6d} XAPI calls")
        return result

    # -- what a user does, through openstacksdk -------------------------------
    def settled(self, server, status: str, timeout: float = 240.0):
        """Wait until the server has ``status`` and no task (the API sets the task first)."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.conn.compute.get_server(server.id)
            if server.status == status and server.task_state is None:
                return server
            if server.status == "ERROR" or time.monotonic() > deadline:
                raise StoryFailed(f"server {server.name} is {server.status} "
                                  f"(task {server.task_state}), not {status}: {server.fault}")
            time.sleep(0.5)

    def boot(self, name: str, image_id: str, count: int = 1) -> list:
        """``count`` servers in one request (Nova names them name-1, name-2, ...), which the
        scheduler spreads over the hosts."""
        flavor = self.conn.compute.find_flavor(resources.FLAVOR)
        net = self.conn.network.find_network(resources.NETWORK)
        self.conn.compute.create_server(name=name, image_id=image_id, flavor_id=flavor.id,
                                        networks=[{"uuid": net.id}], min_count=count,
                                        max_count=count)
        deadline = time.monotonic() + 60
        while len(made := list(self.conn.compute.servers(name=f"^{name}(-[0-9]+)?$"))) < count:
            if time.monotonic() > deadline:
                raise StoryFailed(f"{len(made)} of {count} servers {name} were made")
            time.sleep(0.5)
        return sorted((self.settled(s, "ACTIVE") for s in made), key=lambda s: s.name)

    def action(self, server, call: Callable, status: str, *args):
        call(server, *args)
        return self.settled(server, status)

    def snapshot(self, server) -> str:
        image = self.conn.compute.create_server_image(server, name="demo-snap", wait=True,
                                                      timeout=300)
        self.settled(server, "ACTIVE")
        return image.id

    def delete(self, server) -> None:
        self.conn.compute.delete_server(server)
        self.conn.compute.wait_for_delete(server, wait=240)

    def run(self) -> bool:
        c = self.conn.compute
        self.say(f"the cloud in {self.state.root}: "
                 f"{len(list(c.hypervisors()))} hypervisors, each a simulated XenServer host with "
                 "its own nova-compute and neutron-openvswitch-agent")
        for line in self.hosts.resources():
            self.say(f"host before: {line}")
        image = self.conn.image.find_image(resources.IMAGE)
        self.say(f"image {resources.IMAGE} ({image.id}): a VHD chain in a tarball "
                 f"(direct_vhd), {resources.IMAGE_MIB} MiB disk")
        self.say("")
        self.say("operation                                  wall time   calls the hosts answered")
        servers = self.step(f"boot {self.servers} servers at once", self.boot, "demo", image.id,
                            self.servers)
        for line in self.hosts.resources():
            self.say(f"  with {len(servers)} servers: {line}")
        s = servers[0]
        self.step("reboot (soft)", self.action, s, c.reboot_server, "ACTIVE", "SOFT")
        self.step("reboot (hard)", self.action, s, c.reboot_server, "ACTIVE", "HARD")
        self.step("stop", self.action, s, c.stop_server, "SHUTOFF")
        self.step("start", self.action, s, c.start_server, "ACTIVE")
        self.step("pause", self.action, s, c.pause_server, "PAUSED")
        self.step("unpause", self.action, s, c.unpause_server, "ACTIVE")
        self.step("suspend", self.action, s, c.suspend_server, "SUSPENDED")
        self.step("resume", self.action, s, c.resume_server, "ACTIVE")
        self.step("rescue", self.action, s, c.rescue_server, "RESCUE")
        self.step("unrescue", self.action, s, c.unrescue_server, "ACTIVE")
        snap = self.step("snapshot to Glance", self.snapshot, s)
        again = self.step("boot from the snapshot", self.boot, "demo-from-snap", snap)[0]
        want = resources.image_disk()
        same = self.hosts.root_disk(again.compute_host, self.hosts.vm(again.compute_host, again.id),
                                    len(want)) == want
        console = c.create_server_remote_console(s, protocol="vnc", type="novnc")
        log = c.get_server_console_output(s, length=2)["output"]
        self.say("")
        self.say("servers:")
        for srv in [*servers, again]:
            srv = c.get_server(srv.id)
            rec = self.hosts.vm(srv.compute_host, srv.id)
            self.say(f"  {srv.name:<16} {srv.status:<8} on {srv.compute_host}: VM {rec['name_label']} "
                     f"{rec['power_state']:<8} {len(rec['VBDs'])} disks {len(rec['VIFs'])} VIFs")
        self.say(f"  the snapshot booted again with the image's root-disk bytes: {same}")
        self.say(f"  VNC console URL from Nova: {console.url[:60]}...")
        self.say(f"  console log of {s.name} (dom0 console plugin): {log.strip()!r}")
        self.say("")
        for srv in [*servers, again]:
            self.step(f"delete {srv.name}", self.delete, srv)
        self.conn.image.delete_image(snap)
        self.say("")
        for line in self.hosts.resources():
            self.say(f"host after:  {line}")
        left = self.hosts.leftovers()
        self.say(f"left on the hosts: {left or 'nothing'}")
        if not same:
            raise StoryFailed("the server booted from the snapshot does not have the image's bytes")
        return not left


def run(state_dir: Path, servers: int, hosts: int) -> int:
    state = State(state_dir)
    t = time.monotonic()
    ours = not (state.root / "clouds.yaml").exists() or processes.running(state, "nova-api") is None
    if ours:
        print(f"starting the cloud in {state.root} (scripts/cloud up; logs in {state.logs}) ...",
              flush=True)
        if cloud_cli.up(state, hosts) != 0:
            return 1
    else:
        hosts = len(list(state.run.glob("compute-*-ovs-agent.pid")))
        print(f"using the cloud already up in {state.root} ({hosts} hosts)", flush=True)
    ok = False
    try:
        h = Hosts(state, hosts)
        try:
            ok = Story(state, h, servers).run()
        finally:
            h.close()
    except (StoryFailed, processes.NotReady, urllib.error.URLError, XenAPI.Failure) as exc:
        print(f"FAILED: {exc}", flush=True)
    finally:
        if ours:
            cloud_cli.down(state, keep_state=not ok)
    print(f"\ndemo --cloud {'PASSED' if ok else 'FAILED'} in {time.monotonic() - t:.1f} s", flush=True)
    return 0 if ok else 1
