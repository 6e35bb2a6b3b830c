"""The cloud's state directory: where each service's config, log, pid and data live.

Everything ``scripts/cloud`` starts keeps its files under one directory
(``.cloud/`` by default), so a second ``up`` resumes what the first made and
``down`` knows, by pid, what to stop.  Ports on loopback and the generated
passwords are chosen once and kept (``ports.json``, ``secrets.json``, mode
0600), so the configs stay valid across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

ADDRESS = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


class State:
    """The files of one cloud under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.etc = self.root / "etc"
        self.logs = self.root / "logs"
        self.run = self.root / "run"
        self.data = self.root / "data"

    def make(self) -> None:
        for d in (self.root, self.etc, self.logs, self.run, self.data):
            d.mkdir(parents=True, exist_ok=True)

    def port(self, name: str) -> int:
        """The loopback port of ``name``, chosen free on first use and kept."""
        return int(self._remember("ports", name, free_port))

    def secret(self, name: str) -> str:
        """A generated password for ``name``, kept in ``secrets.json`` (mode 0600)."""
        return str(self._remember("secrets", name, lambda: secrets.token_urlsafe(18)))

    def _remember(self, kind: str, name: str, make):
        path = self.root / f"{kind}.json"
        values = json.loads(path.read_text()) if path.exists() else {}
        if name not in values:
            values[name] = make()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(values, f, indent=1, sort_keys=True)
        return values[name]

    def marker(self, name: str) -> Path:
        """A file saying a one-time step (a database sync, a bootstrap) is done."""
        return self.run / f"{name}.done"

    def done(self, name: str) -> bool:
        return self.marker(name).exists()

    def mark(self, name: str) -> None:
        self.marker(name).touch()
