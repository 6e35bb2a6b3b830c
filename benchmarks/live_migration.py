"""Live migration time and the VM's downtime in the switch-over, on xapisim.

For each disk size (64 MiB and 1 GiB by default) a running VM with one disk
full of non-zero bytes is moved:

* ``shared``: ``VM.pool_migrate`` to the other host of a two-host pool whose
  disk is on the pool's shared NFS SR (nothing but memory moves);
* ``block``: ``VM.migrate_send`` (Storage XenMotion) to a standalone host,
  copying the disk into its Local storage.

Memory copies at ``--migration-mib-per-s`` (default 0: at once, so the time
is the disks' and the simulator's own).  The plain copy pushes the same disk
bytes through a loopback TCP connection into a file: what a block migration
costs at least.  Downtime is what xapisim records for the switch-over.

Run: ``.venv/bin/python benchmarks/live_migration.py [MiB ...]``
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from loopback import make_image, plain_copy  # noqa: E402
from vdi_transfer import _import as import_raw  # noqa: E402

from nova_xenapi.testing.xapi_objects import diskless_vm  # noqa: E402
from xapisim import HostConfig, SimConfig, Simulator, host_configs  # noqa: E402

MIB = 1 << 20
PASSWORD = "bench"
REPEATS = 3


def _running_vm(x, port: int, session: str, sr: str, host: str, image: str, mib: int) -> str:
    vm = diskless_vm(x.xenapi, "bench", 512 * MIB)
    vdi = x.xenapi.VDI.create({"name_label": "bench", "SR": sr, "virtual_size": str(mib * MIB),
                               "type": "user", "sharable": False, "read_only": False,
                               "other_config": {}})
    x.xenapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                         "type": "Disk", "unpluggable": False, "empty": False, "other_config": {},
                         "qos_algorithm_type": "", "qos_algorithm_params": {}})
    import_raw(x, port, session, vdi, image, mib)
    x.xenapi.VM.start_on(vm, host, False, False)
    return vm


def run(mib: int, image: str, tmp: str) -> dict:
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 65536, 16), shared_sr="nfs",
                       sr_size_gib=64, auth_failure_delay=0.0,
                       other_pools=[[HostConfig("127.0.0.9", "xs-standalone", 65536, 16)]])
    out = {"shared": float("inf"), "shared_down": float("inf"),
           "block": float("inf"), "block_down": float("inf")}
    with Simulator(config, tempfile.mkdtemp(dir=tmp)) as sim:
        x = XenAPI.Session(sim.url)
        x.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
        o = XenAPI.Session(sim.pool_url(1))
        o.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
        master = x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0])
        member = [h for h in x.xenapi.host.get_all() if h != master][0]
        shared = x.xenapi.pool.get_default_SR(x.xenapi.pool.get_all()[0])
        dhost = o.xenapi.host.get_all()[0]
        dsr = o.xenapi.pool.get_default_SR(o.xenapi.pool.get_all()[0])
        dnet = o.xenapi.PIF.get_network(o.xenapi.host.get_management_interface(dhost))
        vm = _running_vm(x, sim.port, x._session, shared, master, image, mib)
        for n in range(REPEATS):
            t = time.perf_counter()
            x.xenapi.VM.pool_migrate(vm, member if n % 2 == 0 else master, {})
            out["shared"] = min(out["shared"], time.perf_counter() - t)
            out["shared_down"] = min(out["shared_down"], sim.migrations[-1]["downtime_s"])
        for _ in range(REPEATS):
            src = _running_vm(x, sim.port, x._session, shared, master, image, mib)
            vdi = x.xenapi.VBD.get_VDI(x.xenapi.VM.get_VBDs(src)[0])
            dest = o.xenapi.host.migrate_receive(dhost, dnet, {})
            os.sync()
            t = time.perf_counter()
            new = x.xenapi.VM.migrate_send(src, dest, True, {vdi: dsr}, {}, {}, {})
            out["block"] = min(out["block"], time.perf_counter() - t)
            out["block_down"] = min(out["block_down"], sim.migrations[-1]["downtime_s"])
            o.xenapi.VM.hard_shutdown(new)
            for vbd in o.xenapi.VM.get_VBDs(new):
                d = o.xenapi.VBD.get_VDI(vbd)
                o.xenapi.VBD.destroy(vbd)
                o.xenapi.VDI.destroy(d)
            o.xenapi.VM.destroy(new)
    return out


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        print("live migration on xapisim: time and switch-over downtime; block vs a plain copy")
        print(f"{'disk':>7} {'shared s':>9} {'downtime ms':>12} {'block s':>8} {'downtime ms':>12} "
              f"{'plain copy s':>13} {'block/plain':>12}")
        for mib in sizes:
            image = os.path.join(tmp, f"img-{mib}.raw")
            make_image(image, mib * MIB)
            plain = float("inf")
            for _ in range(REPEATS):
                os.sync()
                plain = min(plain, plain_copy(image, os.path.join(tmp, "copy.raw")))
            r = run(mib, image, tmp)
            print(f"{mib:>5}Mi {r['shared']:>9.3f} {r['shared_down'] * 1000:>12.2f} "
                  f"{r['block']:>8.3f} {r['block_down'] * 1000:>12.2f} {plain:>13.3f} "
                  f"{r['block'] / plain:>12.2f}")
            os.unlink(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
