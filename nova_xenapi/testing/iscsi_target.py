"""A real iSCSI target for tests: a private ``tgtd`` on loopback with file-backed LUNs and CHAP.

Debian's ``tgt`` is a userspace target, so nothing from the kernel is needed.
Each ``IscsiTarget`` runs its own ``tgtd`` (``-f``, its own control port
``-C N`` and portal), configured with ``tgtadm``, and stops it by pid.  It
never touches a system tgtd.  tgtd keeps its control socket at
``/var/run/tgtd/socket.N``, a path compiled into tgt, and that is the one
file outside the state directory.  tgtd ignores SIGTERM, so ``stop`` uses
tgt's own shutdown (each target deleted, ``--op update --mode sys --name
State -v offline``, then ``--op delete --mode system``, which tgt refuses
while a target exists), and kills it only if that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from nova_xenapi.testing import rig

ADDRESS = rig.ADDRESS


class TargetMissing(RuntimeError):
    pass


class IscsiTarget:
    """tgtd on ``127.0.0.1:<port>`` with its LUN files under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        for tool in ("tgtd", "tgtadm"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise TargetMissing(f"{tool} not found: scripts/setup-env installs Debian's tgt")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = rig.free_port()
        self.control = 1000 + self.port % 30000  # tgtd -C (at most 32767): its own control socket
        self.proc: subprocess.Popen | None = None
        self._tids: dict[str, int] = {}
        self._accounts: set[str] = set()

    @property
    def portal(self) -> str:
        return f"{ADDRESS}:{self.port}"

    def start(self) -> IscsiTarget:
        log = open(self.state_dir / "tgtd.log", "wb")  # noqa: SIM115 - the daemon's stderr
        self.proc = subprocess.Popen(
            [self._bin("tgtd"), "-f", "-C", str(self.control), "--iscsi", f"portal={self.portal}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise TargetMissing(f"tgtd exited: {(self.state_dir / 'tgtd.log').read_text()[-500:]}")
            try:
                socket.create_connection((ADDRESS, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TargetMissing("tgtd did not listen") from None
                time.sleep(0.05)
        return self

    def _bin(self, name: str) -> str:
        return shutil.which(name) or f"/usr/sbin/{name}"

    def tgtadm(self, *args: str, lld: bool = True) -> str:
        lld_args = ["--lld", "iscsi"] if lld else []
        r = subprocess.run([self._bin("tgtadm"), "-C", str(self.control), *lld_args, *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"tgtadm {' '.join(a for a in args if a)}: {r.stderr.strip()}")
        return r.stdout

    def add_target(self, iqn: str, lun_sizes: list[int], chap: tuple[str, str] | None = None) -> list[Path]:
        """A target with LUNs 1..n of the given sizes (sparse files); returns the files."""
        tid = max(self._tids.values(), default=0) + 1
        self.tgtadm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
        self._tids[iqn] = tid
        files = [self.add_lun(iqn, n, size) for n, size in enumerate(lun_sizes, 1)]
        self.tgtadm("--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL")
        if chap:
            user, password = chap
            if user not in self._accounts:  # one account may serve many targets
                self.tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", password)
                self._accounts.add(user)
            self.tgtadm("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user)
        return files

    def lun_file(self, iqn: str, lun: int) -> Path:
        return self.state_dir / f"{iqn.replace(':', '_')}-lun{lun}.img"

    def add_lun(self, iqn: str, lun: int, size: int) -> Path:
        path = self.lun_file(iqn, lun)
        with open(path, "wb") as f:
            f.truncate(size)
        self.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(self._tids[iqn]),
                    "--lun", str(lun), "-b", str(path))
        return path

    def remove_lun(self, iqn: str, lun: int) -> None:
        self.tgtadm("--op", "delete", "--mode", "logicalunit", "--tid", str(self._tids[iqn]),
                    "--lun", str(lun))

    def grow_lun(self, iqn: str, lun: int, size: int) -> None:
        """What a storage array does when Cinder extends a volume: the LUN is bigger after."""
        path = self.lun_file(iqn, lun)
        self.remove_lun(iqn, lun)
        os.truncate(path, size)
        self.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(self._tids[iqn]),
                    "--lun", str(lun), "-b", str(path))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # tgt's own shutdown: no targets, offline, delete the system (tgtd then exits)
                for tid in self._tids.values():
                    self.tgtadm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force")
                self.tgtadm("--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
                            lld=False)
                self.tgtadm("--op", "delete", "--mode", "system", lld=False)
                self.proc.wait(10)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        rig.stop(self.proc)
        self.proc = None

    def __enter__(self) -> IscsiTarget:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
