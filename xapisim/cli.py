"""``xapisim serve``: run the simulator as a standalone XAPI host or pool."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .backend import SimConfig
from .simulator import Simulator, host_configs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xapisim", description="A XAPI host and pool simulator.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the XenAPI on loopback addresses")
    s.add_argument("--address", default="127.0.0.1",
                   help="address of the first host (others follow: 127.0.0.2, ...)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--password", default="password", help="password of user root")
    s.add_argument("--password-file", type=Path,
                   help="read root's password from this file (keeps it out of the process list)")
    s.add_argument("--hosts", type=int, default=1, help="number of hosts in the pool")
    s.add_argument("--standalone-hosts", type=int, default=0,
                   help="more hosts, each a pool of its own (to try pool.join, cross-pool migration)")
    s.add_argument("--state-dir", type=Path, default=Path("xapisim-state"))
    s.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed cert made once)")
    s.add_argument("--certificate", type=Path, help="PEM with key and certificate to serve")
    s.add_argument("--http-port", type=int,
                   help="with --tls, also plain HTTP on this port, as xapi answers on 80 beside "
                        "443 (nova-novncproxy's console connections need it)")
    s.add_argument("--memory-mib", type=int, default=65536, help="memory of each host")
    s.add_argument("--cpus", type=int, default=16, help="physical CPUs of each host")
    s.add_argument("--sr-type", default="ext", choices=("ext", "nfs", "lvm"),
                   help="type of each host's local SR")
    s.add_argument("--sr-size-gib", type=int, default=512)
    s.add_argument("--shared-sr", choices=("nfs",),
                   help="also an NFS SR every host of the pool sees, made the pool's default SR")
    s.add_argument("--migration-mib-per-s", type=float, default=0.0,
                   help="how fast a live migration copies memory (0: at once)")
    s.add_argument("--auth-failure-delay", type=float, default=5.0,
                   help="seconds a failed login waits (xapi: about 5)")
    s.add_argument("--ssh-port", type=int,
                   help="also serve SSH (root, the same password) into each simulated dom0")
    s.add_argument("--plugins", type=Path, action="append", default=[],
                   help="install the plugins in this directory into every dom0 (repeatable)")
    s.add_argument("--guest-device-dir", type=Path,
                   help="show disks hot-plugged into running VMs as DIR/<vm-uuid>/<device>")
    s.add_argument("--ovs", choices=("simulated", "real"), default="simulated",
                   help="each dom0's Open vSwitch: xapisim's simulated tools, or a real ovsdb-server "
                        "and ovs-vswitchd (Debian's openvswitch-switch)")
    s.add_argument("--nfs-export", action="append", default=[], metavar="SERVER:/PATH=DIR",
                   help="let clients introduce nfs SRs from this export, kept in DIR (no NFS "
                        "server runs; repeatable)")
    s.add_argument("-v", "--verbose", action="store_true")
    return ap


def _exports(specs: list[str]) -> dict[str, str]:
    exports = {}
    for spec in specs:
        export, sep, directory = spec.rpartition("=")
        if not sep or ":" not in export or not directory:
            raise SystemExit(f"--nfs-export {spec!r}: expected SERVER:/PATH=DIR")
        exports[export] = str(Path(directory).resolve())
    return exports


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.password_file:
        args.password = args.password_file.read_text().strip()
    hosts = host_configs(args.hosts + args.standalone_hosts, args.memory_mib, args.cpus, args.address)
    config = SimConfig(password=args.password, hosts=hosts[:args.hosts],
                       other_pools=[[h] for h in hosts[args.hosts:]],
                       sr_type=args.sr_type, sr_size_gib=args.sr_size_gib,
                       shared_sr=args.shared_sr, migration_mib_per_s=args.migration_mib_per_s,
                       auth_failure_delay=args.auth_failure_delay,
                       plugin_dirs=[str(p) for p in args.plugins], real_ovs=args.ovs == "real",
                       nfs_exports=_exports(args.nfs_export),
                       device_dir=str(args.guest_device_dir) if args.guest_device_dir else None)
    sim = Simulator(config, args.state_dir, port=args.port, tls=args.tls,
                    certificate=args.certificate, ssh_port=args.ssh_port, http_port=args.http_port)
    sim.start()
    print(f"xapisim: pool of {args.hosts} host(s); master at {sim.url}", flush=True)
    for i in range(1, len(sim.backends)):
        print(f"  standalone pool master {sim.pool_url(i)}", flush=True)
    for url in sim.host_urls:
        print(f"  host {url}", flush=True)
    if sim.ssh_servers:
        print(f"  ssh port {sim.ssh_port}, host key {sim.ssh_fingerprint}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sim.stop()
    print("xapisim: stopped, state saved in", args.state_dir, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
