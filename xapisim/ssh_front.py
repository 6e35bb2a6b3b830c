"""SSH into a simulated dom0, as operators (and xenapi-bootstrap) reach a real one.

One paramiko server per host address: ``root`` with the pool password or a
key listed in that dom0's ``/root/.ssh/authorized_keys``, a host key made
on first start (its SHA-256 fingerprint is printed by the simulator so
clients can pin it).  SFTP works on the host's dom0 directory
as if it were ``/`` (absolute symlinks are kept inside it).  ``exec`` runs a
small set of dom0 commands against the simulated state; anything else exits
127 (``command not found``), as a missing binary would.

Commands: the simulated dom0's own tools in ``usr/sbin`` (``ovs-vsctl``,
``ovs-ofctl``, ``ip``: see ``dom0lib/dom0_net.py``), plus
``cat /etc/xensource-inventory`` and ``test -e PATH``.  paramiko is the
maintained SSH implementation the field uses (Nova already depends on it).
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import stat
import subprocess
import threading
from pathlib import Path

import paramiko

from .plugins import dom0_env

LOG = logging.getLogger(__name__)


def load_host_key(path: Path) -> paramiko.RSAKey:
    if path.exists():
        return paramiko.RSAKey(filename=str(path))
    key = paramiko.RSAKey.generate(2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key_file(str(path))
    return key


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` form."""
    return key.fingerprint


class _Auth(paramiko.ServerInterface):
    def __init__(self, password: str, root: Path) -> None:
        self.password = password
        self.root = root
        self.pending = threading.Condition()
        self.commands: dict[int, bytes] = {}

    def check_auth_password(self, username, password):
        if username == "root" and password == self.password:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        """root's keys in the dom0's /root/.ssh/authorized_keys (trust between dom0s)."""
        if username != "root":
            return paramiko.AUTH_FAILED
        try:
            lines = (self.root / "root/.ssh/authorized_keys").read_text().splitlines()
        except OSError:
            return paramiko.AUTH_FAILED
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == key.get_name() and fields[1] == key.get_base64():
                return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "publickey,password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        # answered after paramiko has acknowledged the request (see SSHServer._serve)
        with self.pending:
            self.commands[channel.get_id()] = command
            self.pending.notify_all()
        return True

    def exec_when_asked(self, channel) -> None:
        """Run the command the client asks for on ``channel`` (SFTP channels never ask)."""
        with self.pending:
            if not self.pending.wait_for(lambda: channel.get_id() in self.commands, timeout=10):
                return
            command = self.commands.pop(channel.get_id())
        status, out, err = run_command(self.root, command.decode("utf-8", "replace"))
        try:
            channel.sendall(out.encode())
            channel.sendall_stderr(err.encode())
            channel.send_exit_status(status)
        finally:
            channel.close()


class _RootedSFTP(paramiko.SFTPServerInterface):
    """SFTP on a directory that stands for ``/``."""

    def __init__(self, server, *args, root: str = "/", **kwargs) -> None:
        super().__init__(server, *args, **kwargs)
        self.root = os.path.realpath(root)

    def _local(self, path: str) -> str:
        p = os.path.normpath("/" + path.lstrip("/"))
        return os.path.join(self.root, p.lstrip("/"))

    def _attr(self, st, name: str = "") -> paramiko.SFTPAttributes:
        a = paramiko.SFTPAttributes.from_stat(st, name)
        return a

    def _wrap(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def list_folder(self, path):
        def go():
            d = self._local(path)
            return [self._attr(os.lstat(os.path.join(d, n)), n) for n in os.listdir(d)]
        return self._wrap(go)

    def stat(self, path):
        return self._wrap(lambda: self._attr(os.stat(self._local(path))))

    def lstat(self, path):
        return self._wrap(lambda: self._attr(os.lstat(self._local(path))))

    def open(self, path, flags, attr):
        def go():
            mode = getattr(attr, "st_mode", None) or 0o644
            fd = os.open(self._local(path), flags | getattr(os, "O_BINARY", 0), mode)
            if flags & os.O_WRONLY:
                fstr = "ab" if flags & os.O_APPEND else "wb"
            elif flags & os.O_RDWR:
                fstr = "a+b" if flags & os.O_APPEND else "r+b"
            else:
                fstr = "rb"
            h = paramiko.SFTPHandle(flags)
            f = os.fdopen(fd, fstr)
            h.filename = self._local(path)
            h.readfile = f
            h.writefile = f
            return h
        return self._wrap(go)

    def remove(self, path):
        return self._wrap(lambda: os.remove(self._local(path)) or paramiko.SFTP_OK)

    def rename(self, oldpath, newpath):
        return self._wrap(lambda: os.replace(self._local(oldpath), self._local(newpath))
                          or paramiko.SFTP_OK)

    posix_rename = rename

    def mkdir(self, path, attr):
        return self._wrap(lambda: os.mkdir(self._local(path)) or paramiko.SFTP_OK)

    def rmdir(self, path):
        return self._wrap(lambda: os.rmdir(self._local(path)) or paramiko.SFTP_OK)

    def chattr(self, path, attr):
        def go():
            if getattr(attr, "st_mode", None) is not None:
                os.chmod(self._local(path), stat.S_IMODE(attr.st_mode))
            return paramiko.SFTP_OK
        return self._wrap(go)

    def canonicalize(self, path):
        return os.path.normpath("/" + path.lstrip("/"))

    def symlink(self, target_path, path):
        # an absolute target names a dom0 path: keep it inside the dom0 directory
        target = self._local(target_path) if target_path.startswith("/") else target_path
        return self._wrap(lambda: os.symlink(target, self._local(path)) or paramiko.SFTP_OK)

    def readlink(self, path):
        def go():
            target = os.readlink(self._local(path))
            if target.startswith(self.root + os.sep):
                return "/" + os.path.relpath(target, self.root)
            return target
        return self._wrap(go)


def run_command(root: Path, command: str) -> tuple[int, str, str]:
    """Run a command "in" the simulated dom0: its own tools (usr/sbin), or a few builtins."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        return 2, "", f"sh: {e}\n"
    if not argv:
        return 0, "", ""
    tool = root / "usr/sbin" / argv[0]
    if "/" not in argv[0] and tool.is_file():
        proc = subprocess.run([str(tool), *argv[1:]], capture_output=True, env=dom0_env(root),
                              cwd=root, timeout=120)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    if argv[:2] == ["cat", "/etc/xensource-inventory"]:
        inv = root / "etc/xensource-inventory"
        return (0, inv.read_text(), "") if inv.exists() else (1, "", "cat: no such file\n")
    if argv[0] == "test" and len(argv) == 3 and argv[1] == "-e":
        return (0 if os.path.lexists(root / argv[2].lstrip("/")) else 1), "", ""
    return 127, "", f"sh: {argv[0]}: command not found\n"


class SSHServer:
    """Listens on ``address``:``port`` and serves one simulated dom0."""

    def __init__(self, address: str, port: int, host_key: paramiko.PKey, password: str,
                 dom0_root) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host_key = host_key
        self.password = password
        self.dom0_root = dom0_root  # callable: the host's current dom0 directory
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name=f"xapisim-ssh-{address}").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        root = Path(self.dom0_root())
        transport = paramiko.Transport(conn)
        try:
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _RootedSFTP, root=str(root))
            auth = _Auth(self.password, root)
            transport.start_server(server=auth)
            while transport.is_active() and not self._stop.is_set():
                chan = transport.accept(1)
                if chan is not None:
                    threading.Thread(target=auth.exec_when_asked, args=(chan,), daemon=True).start()
        except (paramiko.SSHException, EOFError, OSError) as e:
            LOG.debug("ssh session ended: %s", e)
        finally:
            transport.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
