"""What the benchmarks share: free ports, test images, and the plain loopback copy they compare against."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHUNK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(path: str, size: int, seed: int = 7) -> str:
    """A raw image of non-zero bytes (so nothing is skipped as a hole); returns its SHA-256."""
    block = bytes((i * seed + 1) % 251 + 1 for i in range(CHUNK))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // CHUNK):
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def plain_copy(path: str, dest: str | None = None) -> float:
    """Seconds to push the file through a loopback TCP connection to a reader that writes it
    to ``dest`` (or throws it away)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def sink():
        conn, _ = server.accept()
        out = open(dest, "wb") if dest else None  # noqa: SIM115 - closed below
        try:
            while data := conn.recv(CHUNK):
                if out:
                    out.write(data)
        finally:
            if out:
                out.close()
            conn.close()

    t = threading.Thread(target=sink)
    t.start()
    start = time.perf_counter()
    with socket.create_connection(server.getsockname()) as c, open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            c.sendall(chunk)
    t.join()
    server.close()
    return time.perf_counter() - start


@contextlib.contextmanager
def xapisim_process(tmp: str, sr_type: str, password: str, sr_size_gib: int = 16):
    """A fresh ``xapisim serve`` in its own process; yields (port, process) and stops it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xapisim", "serve", "--port", str(port),
                             "--password", password, "--state-dir", tempfile.mkdtemp(dir=tmp),
                             "--sr-type", sr_type, "--auth-failure-delay", "0",
                             "--sr-size-gib", str(sr_size_gib)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if "master at" not in proc.stdout.readline().decode():
            raise RuntimeError("xapisim did not start")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(30)
