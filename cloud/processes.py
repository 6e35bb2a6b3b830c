"""Start, find and stop the cloud's processes by pid.

Each service runs detached in its own session with its output in its own log
file, and its pid in ``run/<name>.pid`` together with the process's start
time, so a pid the kernel reused for something else is never taken for ours.
Stopping sends SIGTERM to the service's whole process group, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .state import State


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pidfile(state: State, name: str) -> Path:
    return state.run / f"{name}.pid"


def running(state: State, name: str) -> int | None:
    """The pid of service ``name`` if the process we started is still alive."""
    try:
        pid_s, started = _pidfile(state, name).read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_s)
    if _start_time(pid) != started or _gone(pid):  # another process now, or ours has exited
        return None
    return pid


def start(state: State, name: str, argv: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start ``argv`` as service ``name`` (unless it runs already); output to logs/<name>.log."""
    pid = running(state, name)
    if pid:
        return pid
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(state.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd or state.root, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _pidfile(state, name).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def stop_all(state: State, names: list[str], timeout: float = 30.0) -> list[str]:
    """SIGTERM every named service's process group at once, wait up to ``timeout`` for all,
    then SIGKILL what is left; returns the names that were running."""
    pids = {name: pid for name in names if (pid := running(state, name)) is not None}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        alive = {n: p for n, p in pids.items() if not _gone(p)}
        for pid in alive.values():
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {n: p for n, p in alive.items() if not _gone(p)}
        if not alive:
            break
    for name in names:  # only now: a down interrupted half-way can be run again
        _pidfile(state, name).unlink(missing_ok=True)
    return list(pids)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it was our child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return _start_time(pid) is None or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def log_tail(state: State, name: str, lines: int = 25) -> str:
    try:
        return "\n".join((state.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NotReady(RuntimeError):
    """A service did not come up; the message has the end of its log."""


def wait_until(state: State, name: str, ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """Wait for ``ready()``, failing early with the log's tail if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            pass
        if running(state, name) is None:
            raise NotReady(f"{name} exited; the end of {state.logs / (name + '.log')}:\n"
                           f"{log_tail(state, name)}")
        if time.monotonic() > deadline:
            raise NotReady(f"{name} did not answer in {timeout:.0f} s; the end of its log:\n"
                           f"{log_tail(state, name)}")
        time.sleep(0.3)


def tcp_open(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1):
            return True
    return check


def http_answers(url: str) -> Callable[[], bool]:
    """True once ``url`` gives any HTTP response (401 and 300 included)."""
    def check() -> bool:
        try:
            urllib.request.urlopen(url, timeout=3).close()
        except urllib.error.HTTPError:
            pass
        return True
    return check
