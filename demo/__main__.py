"""The main job: a real Nova runs servers on a simulated XenServer pool.

It starts ``xapisim``, prepares it with the real ``xenapi-bootstrap`` (over
XAPI and SSH into the simulated dom0), starts Nova's API, conductor, scheduler,
placement and a compute service whose driver is ``xenapi.XenAPIDriver``, and
drives servers through the compute API: a concurrent boot, reboot, stop and
start, pause, suspend and resume, rescue, snapshot and a boot from that
snapshot, and delete.  It prints a report: the servers and their states,
host resources before and after, and for every operation its wall time and
the XAPI calls the driver made.  It ends by checking that nothing was left
on the host.  Exit status 0 means every step did what it should.

``--cloud`` tells the same story through the real cloud instead (``demo/cloud_story.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import unittest

# nova-compute runs on native threads by default since Nova 2026.2: so does the demo
os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

from nova_xenapi.testing import nova_stack  # noqa: E402 - after choosing the threading mode

REPORT: list[str] = []


def say(line: str = "") -> None:
    REPORT.append(line)


class Demo(nova_stack.XenAPIFunctionalBase):
    SERVERS = 3
    BOOTSTRAP = True  # the host is prepared by the real xenapi-bootstrap, over SSH

    def host_resources(self) -> str:
        x = self.api_x
        host = x.host.get_all()[0]
        metrics = x.host_metrics.get_record(x.host.get_metrics(host))
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        return (f"memory free {int(x.host.compute_free_memory(host)) >> 20} of "
                f"{int(metrics['memory_total']) >> 20} MiB, SR used "
                f"{int(x.SR.get_physical_utilisation(sr)) >> 20} MiB of "
                f"{int(x.SR.get_physical_size(sr)) >> 30} GiB")

    def cached_images(self) -> int:
        return sum("nova_image_cache" in r["other_config"]
                   for r in self.api_x.VDI.get_all_records().values())

    def step(self, what: str, fn, *args):
        calls = self.driver.session.calls
        t = time.monotonic()
        result = fn(*args)
        took = time.monotonic() - t
        say(f"  {what:<38} {took:7.2f} s {self.driver.session.calls - calls:6d} XAPI calls")
        return result

    def boot_all(self, image: str, n: int) -> list[dict]:
        net = [{"uuid": self.neutron.network_1["id"]}]
        posted = [self.api.post_server({"server": self._build_server(
            name=f"demo-{i}", image_uuid=image, networks=net)}) for i in range(n)]
        return [self._wait_for_state_change(s, "ACTIVE") for s in posted]

    def action(self, server: dict, body: dict, state: str) -> dict:
        self.api.post_server_action(server["id"], body)
        return self._wait_for_state_change(server, state)

    def snapshot(self, server: dict) -> str:
        image = self.api.post_server_action(server["id"], {"createImage": {"name": "demo-snap"}})
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None}, max_retries=100)
        return image["image_id"]

    def test_demo(self) -> None:
        sim = self.sim
        say(f"xapisim pool at {sim.url} ({len(sim.host_urls)} host), "
            f"Nova {__import__('nova.version', fromlist=['x']).version_info.version_string()} "
            "with compute_driver = xenapi.XenAPIDriver")
        say("xenapi-bootstrap (XAPI + SSH into the simulated dom0):")
        for line in self.bootstrap_output.splitlines():
            say(f"  {line}")
        say(f"host before: {self.host_resources()}")
        data = nova_stack.image_data(3, 16 << 20)
        image = self.make_image(data)
        say(f"image {image}: raw, {len(data) >> 20} MiB in Glance")
        say("")
        say("operation                                  wall time   calls the driver made")
        servers = self.step(f"boot {self.SERVERS} servers at once", self.boot_all, image, self.SERVERS)
        say(f"  host with {len(servers)} servers: {self.host_resources()}")
        s = servers[0]
        self.step("reboot (soft)", self._reboot_server, s)
        self.step("reboot (hard)", self._reboot_server, s, True)
        self.step("stop", self.action, s, {"os-stop": None}, "SHUTOFF")
        self.step("start", self.action, s, {"os-start": None}, "ACTIVE")
        self.step("pause", self.action, s, {"pause": None}, "PAUSED")
        self.step("unpause", self.action, s, {"unpause": None}, "ACTIVE")
        self.step("suspend", self.action, s, {"suspend": None}, "SUSPENDED")
        self.step("resume", self.action, s, {"resume": None}, "ACTIVE")
        self.step("rescue", self.action, s, {"rescue": {}}, "RESCUE")
        self.step("unrescue", self.action, s, {"unrescue": None}, "ACTIVE")
        snap = self.step("snapshot to Glance", self.snapshot, s)
        again = self.step("boot from the snapshot", self._create_server, "demo-from-snap", snap, None,
                          "none")
        same = self.read_vdi(self.disk(again)[0]["VDI"], len(data)) == data
        console = self.api.api_post(f"/servers/{s['id']}/remote-consoles", {
            "remote_console": {"protocol": "vnc", "type": "novnc"}}).body
        say("")
        say("servers:")
        for srv in [*servers, again]:
            srv = self.api.get_server(srv["id"])
            rec = self.vm_of(srv)
            say(f"  {srv['name']:<16} {srv['status']:<8} VM {rec['name_label']} {rec['power_state']:<8} "
                f"{len(rec['VBDs'])} disks {len(rec['VIFs'])} VIFs")
        say(f"  snapshot {snap} booted again with identical root-disk bytes: {same}")
        say(f"  VNC console URL from Nova: {console['remote_console']['url'][:60]}...")
        log = self.api.post_server_action(s["id"], {"os-getConsoleOutput": {"length": 2}})["output"]
        say(f"  console log of {s['name']} (dom0 console plugin): {log.strip()!r}")
        say("")
        for srv in [*servers, again]:
            self.step(f"delete {srv['name']}", self._delete_server, srv)
        say("")
        say(f"XAPI sessions the driver opened at most: {self.driver.session.peak_open} "
            f"(connection_concurrent = {self.CONNECTION_CONCURRENT})")
        say(f"base images cached in the SR (cache_images = all): {self.cached_images()}; "
            "the VM 'nova-compute' stands for the compute VM")
        self.driver.manage_image_cache(None, [])
        say(f"after Nova's image cache manager ran: {self.cached_images()}")
        left = self.leftovers()
        say(f"host after:  {self.host_resources()}")
        say(f"left on the host: {left or 'nothing'}")
        self.assertTrue(same, "snapshot bytes differ")
        self.assertHostClean()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3, help="servers booted at once")
    parser.add_argument("--log", default="demo-nova.log", help="where Nova's own log goes")
    parser.add_argument("--cloud", action="store_true",
                        help="the same story through the real cloud (scripts/cloud) and openstacksdk")
    parser.add_argument("--state-dir", default=".cloud-demo",
                        help="--cloud: the cloud's state directory (one already up there is used)")
    parser.add_argument("--hosts", type=int, default=2, help="--cloud: simulated XenServer hosts")
    args = parser.parse_args()
    if args.cloud:
        from demo import cloud_story
        return cloud_story.run(args.state_dir, args.servers, args.hosts)
    Demo.SERVERS = args.servers
    t = time.monotonic()
    print(f"starting xapisim and Nova (Nova's log: {args.log}) ...", flush=True)
    # Nova's services log to stdout and stderr, also while they shut down at exit: all of it
    # goes to the log file, and the report to the terminal
    out = os.fdopen(os.dup(1), "w")
    log = open(args.log, "w")  # noqa: SIM115 - open until the process ends
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    with open(os.devnull, "w") as quiet:
        result = unittest.TextTestRunner(stream=quiet, verbosity=0).run(
            unittest.defaultTestLoader.loadTestsFromTestCase(Demo))
    print("\n".join(REPORT), file=out)
    for _, trace in result.errors + result.failures:
        print(trace.split("Traceback (most recent call last):")[-1][-3000:], file=out)
    print(f"\ndemo {'PASSED' if result.wasSuccessful() else 'FAILED'} in {time.monotonic() - t:.1f} s",
          file=out, flush=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
