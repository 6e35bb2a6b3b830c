"""Resize/migration disk transfer between two dom0s, next to a plain loopback copy of the same file.

Two standalone simulated hosts with SSH into their dom0s and root trust
between them.  The source SR holds the instance's root disk as one dynamic
VHD of non-zero bytes; the source's ``migration.py`` plugin stages it
(hard links under ``/images``) and the destination's fetches it with
OpenSSH's ``sftp`` from the simulated source dom0 (xapisim's SSH front is
paramiko, in Python, where a real dom0 runs OpenSSH's sftp-server), then
relinks, checks and moves it into its SR.  The plain copy sends the same
VHD file over a loopback TCP connection.

Prints MiB/s of VHD file for the stage and the receive, the same sftp fetch
alone (OpenSSH's client with the plugin's options against xapisim's SSH front:
the rig component the receive must pass through), the plain copy, and the
receive's ratio to the plain copy and to the sftp fetch alone.

The SSH front bounds it: paramiko (and asyncssh, tried) move 150-200 MiB/s
here with AES-GCM, while OpenSSH's sshd, which a real dom0 runs, cannot be run
per simulated dom0 without root-only changes outside the state directory (its
privilege separation directory ``/run/sshd`` is compiled in, and
``ChrootDirectory`` wants root-owned parents all the way up).

Run: ``.venv/bin/python benchmarks/migration_transfer.py [MiB ...]``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import XenAPI

from nova_xenapi.dom0 import PLUGIN_DIR
from nova_xenapi.testing import dom0_trust
from xapisim import SimConfig, Simulator, host_configs
from xapisim.backend import HostConfig

sys.path.insert(0, os.path.dirname(__file__))
from loopback import make_image, plain_copy  # noqa: E402

# the plugin's own sftp options, read from the plugin as a dom0 would load it
sys.path[:0] = [str(PLUGIN_DIR), str(Path(__import__("xapisim").__file__).parent / "dom0lib")]
from migration import CIPHERS, KEYS  # noqa: E402

MIB = 1 << 20
PASSWORD = "bench"
SRC, DST = "127.0.0.1", "127.0.0.2"


def _side(sim: Simulator, address: str) -> tuple[XenAPI.Session, str, str, Path]:
    s = XenAPI.Session(sim.url_of(address))
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "bench")
    x = s.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    host = x.host.get_all()[0]
    sr_dir = sim.dom0_of(address) / "var/run/sr-mount" / x.SR.get_uuid(sr)
    dom0_trust.link_images(sim.dom0_of(address), sr_dir)
    return s, host, sr, sr_dir


def run(mib: int, tmp: str) -> tuple[float, float, float, int]:
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), plugin_dirs=[str(PLUGIN_DIR)],
                       other_pools=[[HostConfig(DST, "xs-host-2", 8192, 4)]])
    with Simulator(config, Path(tmp) / f"state-{mib}", ssh_port=0) as sim:
        dom0_trust.trust(sim, SRC, DST)
        src, src_host, src_sr, src_dir = _side(sim, SRC)
        dst, dst_host, dst_sr, _ = _side(sim, DST)
        raw = os.path.join(tmp, f"disk-{mib}.raw")
        make_image(raw, mib * MIB)
        disk = str(uuid.uuid4())
        vhd = src_dir / f"{disk}.vhd"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                        "subformat=dynamic,force_size=on", raw, str(vhd)], check=True)
        os.unlink(raw)
        instance = str(uuid.uuid4())
        start = time.perf_counter()
        src.xenapi.host.call_plugin(src_host, "migration.py", "stage_vhds", {
            "instance_uuid": instance, "disk": "root", "sr_uuid": src.xenapi.SR.get_uuid(src_sr),
            "vdi_uuids": disk})
        staged = time.perf_counter() - start
        start = time.perf_counter()
        out = json.loads(dst.xenapi.host.call_plugin(dst_host, "migration.py", "receive_vhds", {
            "instance_uuid": instance, "disk": "root", "source_host": SRC,
            "source_port": str(sim.ssh_port), "count": "1",
            "sr_uuid": dst.xenapi.SR.get_uuid(dst_sr), "uuids": str(uuid.uuid4())}))
        received = time.perf_counter() - start
        assert out["vdis"]
        front = sftp_alone(sim, instance)
        plain = plain_copy(str(vhd))
        size = vhd.stat().st_size
        for s in (src, dst):
            s.xenapi.session.logout()
    return staged, received, front, plain, size


def sftp_alone(sim: Simulator, instance: str) -> float:
    """Seconds for OpenSSH's sftp, with the destination dom0's key and the plugin's options,
    to fetch the staged VHD from the source's SSH front into /dev/null: the rig alone."""
    ssh_dir = sim.dom0_of(DST) / "root/.ssh"
    keys = [a for k in KEYS if (ssh_dir / k).exists() for a in ("-i", str(ssh_dir / k))]
    start = time.perf_counter()
    subprocess.run(["sftp", "-b", "-", "-P", str(sim.ssh_port), "-B", "131072", "-o", "BatchMode=yes",
                    "-o", f"Ciphers={CIPHERS}", "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}",
                    "-o", "IdentitiesOnly=yes", *keys, f"root@{SRC}"],
                   input=f"get /images/instance{instance}/root/0.vhd /dev/null\n".encode(),
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [64, 1024]
    print("resize/migration transfer of one dynamic VHD between two simulated dom0s,")
    print("sftp (OpenSSH client) to xapisim's SSH front; best of 2 runs each")
    print(f"{'size':>8} {'stage MiB/s':>12} {'receive MiB/s':>14} {'sftp alone':>14} "
          f"{'plain MiB/s':>12} {'ratio':>6} {'vs sftp':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-migration-") as tmp:
        for mib in sizes:
            runs = [run(mib, os.path.join(tmp, str(i))) for i in range(2)]
            staged = min(r[0] for r in runs)
            received = min(r[1] for r in runs)
            front = min(r[2] for r in runs)
            plain = min(r[3] for r in runs)
            size = runs[0][4] / MIB
            print(f"{mib:>6}Mi {size / staged:>12.0f} {size / received:>14.0f} {size / front:>14.0f} "
                  f"{size / plain:>12.0f} {plain / received:>6.2f} {front / received:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
