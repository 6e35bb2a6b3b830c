"""Time from ``server create`` to ACTIVE in the real cloud, next to Nova's fake driver, same run.

Brings up ``scripts/cloud`` (2 simulated XenServer hosts) in a fresh state
directory, adds one more nova-compute with ``compute_driver =
fake.FakeDriver`` to the same control plane, then through openstacksdk boots
1 and then 20 servers at once onto ``compute-1`` (XenAPIDriver on xapisim)
and onto ``fake-1`` (the baseline: everything but the driver is the same),
with no network (the fake host has no OVS agent; Neutron's part is timed in
``scripts/cloud smoke``).  Prints per batch the median and slowest time to
ACTIVE and the batch's wall time, the ratio to the fake driver, and the peak
RSS (VmHWM) of every service.  Run: ``.venv/bin/python benchmarks/cloud_boot.py``
(about 6 minutes; the cloud is stopped and removed at the end).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud import __main__ as cloud_cli  # noqa: E402
from cloud import configs, processes, resources  # noqa: E402
from cloud.control_plane import BIN, admin_connection  # noqa: E402
from cloud.state import State  # noqa: E402

FAKE = "fake-1"


def start_fake_compute(state: State) -> None:
    sections = configs.nova_common(state, FAKE)
    sections["DEFAULT"].update({"host": FAKE, "compute_driver": "fake.FakeDriver",
                                "state_path": str(state.data / FAKE)})
    (state.data / FAKE).mkdir(parents=True, exist_ok=True)
    conf = configs.write_ini(state.etc / "nova" / f"{FAKE}.conf", sections)
    processes.start(state, FAKE, [str(BIN / "nova-compute"), "--config-file", str(conf)])
    conn = admin_connection(state)
    deadline = time.monotonic() + 120
    while not any(h.name == FAKE for h in conn.compute.hypervisors()):
        if processes.running(state, FAKE) is None or time.monotonic() > deadline:
            raise RuntimeError(f"{FAKE} did not come up:\n{processes.log_tail(state, FAKE)}")
        time.sleep(1)


def boot(conn, host: str, n: int, image: str, flavor: str) -> tuple[list[float], float]:
    t0 = time.monotonic()
    started = {}
    for i in range(n):
        s = conn.compute.create_server(name=f"bench-{host}-{n}-{i}", image_id=image, flavor_id=flavor,
                                       networks="none", host=host)
        started[s.id] = time.monotonic()
    took = {}
    while len(took) < n:
        for s in conn.compute.servers(name=f"^bench-{host}-{n}-"):
            if s.id in took:
                continue
            if s.status == "ERROR":
                raise RuntimeError(f"{s.name} went to ERROR: {s.fault}")
            if s.status == "ACTIVE":
                took[s.id] = time.monotonic() - started[s.id]
        time.sleep(0.2)
    wall = time.monotonic() - t0
    for sid in took:
        conn.compute.delete_server(sid)
    deadline = time.monotonic() + 300
    while list(conn.compute.servers(name=f"^bench-{host}-{n}-")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"servers on {host} not deleted in 300 s")
        time.sleep(0.5)
    return list(took.values()), wall


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a service's process and its children (uWSGI workers, privsep daemons)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if int(proc.name) == pid or int(stat[2]) == pid:
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="nova-xenapi-cloud-bench-"))
    state = State(root)
    try:
        if cloud_cli.up(state, 2) != 0:
            return 1
        start_fake_compute(state)
        conn = admin_connection(state)
        conn.set_compute_quotas(conn.current_project_id, instances=-1, cores=-1, ram=-1)
        image = conn.image.find_image(resources.IMAGE).id
        flavor = conn.compute.find_flavor(resources.FLAVOR).id
        print("\nserver create -> ACTIVE (no network), per batch: median / slowest per server, "
              "batch wall time")
        rows = {}
        for n in (1, 20):
            for host in ("compute-1", FAKE):
                times, wall = boot(conn, host, n, image, flavor)
                rows[(host, n)] = (statistics.median(times), max(times), wall)
                med, worst, wall = rows[(host, n)]
                driver = "XenAPIDriver (xapisim)" if host != FAKE else "fake.FakeDriver"
                print(f"  {n:2d} at once  {driver:<24} median {med:6.2f} s  slowest {worst:6.2f} s  "
                      f"batch {wall:6.2f} s", flush=True)
            x, f = rows[("compute-1", n)], rows[(FAKE, n)]
            print(f"  {n:2d} at once  ratio XenAPIDriver / fake: median {x[0] / f[0]:.2f}, "
                  f"batch {x[2] / f[2]:.2f}")
        print("\npeak RSS (VmHWM, with child processes), MiB:")
        for name in [*cloud_cli.service_names(state), FAKE]:
            pid = processes.running(state, name)
            if pid:
                print(f"  {name:<22} {peak_rss_mib(pid):8.1f}")
        return 0
    finally:
        processes.stop_all(state, [FAKE])  # not one of the cloud's own services
        cloud_cli.down(state, keep_state=False)


if __name__ == "__main__":
    sys.exit(main())
