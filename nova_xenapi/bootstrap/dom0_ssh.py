"""The dom0 as xenapi-bootstrap reaches it: root over SSH with the host key checked (paramiko).

A host key is accepted only if it is in the given known_hosts file or matches
the given SHA-256 fingerprint; otherwise the connection is refused with the
fingerprint to verify, never trusted on first use.
"""

from __future__ import annotations

import io
import stat

import paramiko


class HostKeyRefused(Exception):
    """The dom0's SSH host key is not one the operator said to trust."""


class _PinnedKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint

    def missing_host_key(self, client, hostname, key):
        if self.fingerprint and key.fingerprint == self.fingerprint:
            return
        raise HostKeyRefused(
            f"the SSH host key of {hostname} ({key.get_name()} {key.fingerprint}) is not trusted: "
            "check it on the host's console (ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub) and pass "
            "--host-key-fingerprint, or add it to --known-hosts")


class Dom0:
    """File and command access to dom0 over one SSH connection."""

    def __init__(self, host: str, port: int, password: str, *, known_hosts: str | None = None,
                 fingerprint: str | None = None, timeout: float = 15.0) -> None:
        self._client = paramiko.SSHClient()
        if known_hosts:
            self._client.load_host_keys(known_hosts)
        self._client.set_missing_host_key_policy(_PinnedKey(fingerprint))
        self._client.connect(host, port=port, username="root", password=password, timeout=timeout,
                             look_for_keys=False, allow_agent=False)
        self._sftp = self._client.open_sftp()

    def close(self) -> None:
        self._sftp.close()
        self._client.close()

    def lstat(self, path: str):
        try:
            return self._sftp.lstat(path)
        except FileNotFoundError:
            return None

    def read(self, path: str) -> bytes | None:
        try:
            buf = io.BytesIO()
            self._sftp.getfo(path, buf)
            return buf.getvalue()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes, mode: int) -> None:
        tmp = path + ".xenapi-bootstrap"
        self._sftp.putfo(io.BytesIO(data), tmp)
        self._sftp.chmod(tmp, mode)
        self._sftp.posix_rename(tmp, path)

    def is_executable(self, path: str) -> bool:
        st = self.lstat(path)
        return bool(st and st.st_mode & stat.S_IXUSR)

    def readlink(self, path: str) -> str | None:
        st = self.lstat(path)
        if st is None or not stat.S_ISLNK(st.st_mode):
            return None
        return self._sftp.readlink(path)

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if self.lstat(sub) is None:
                self._sftp.mkdir(sub)

    def symlink(self, target: str, path: str) -> None:
        self._sftp.symlink(target, path)

    def remove(self, path: str) -> None:
        self._sftp.remove(path)

    def rmdir(self, path: str) -> None:
        self._sftp.rmdir(path)

    def listdir(self, path: str) -> list[str]:
        return self._sftp.listdir(path)

    def run(self, command: str) -> tuple[int, str, str]:
        _, out, err = self._client.exec_command(command, timeout=60)
        status = out.channel.recv_exit_status()
        return status, out.read().decode(), err.read().decode()
