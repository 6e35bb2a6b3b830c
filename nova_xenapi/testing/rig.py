"""Helpers for the test rig's own daemons (Glance, tgtd): a free loopback port, and stopping one."""

from __future__ import annotations

import socket
import subprocess

ADDRESS = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM, a grace period, then SIGKILL; ``proc`` is reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
