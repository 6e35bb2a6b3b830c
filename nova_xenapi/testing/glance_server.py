"""A real Glance API (the ``glance`` package from PyPI) in its own process, for tests and benchmarks.

Glance no longer ships a standalone server: its API is a WSGI application
(``glance.wsgi.api``) meant for uWSGI or mod_wsgi.  Here it is served as
Glance's docs and deployments serve it, by uWSGI (from PyPI, as in
``scripts/cloud``), over HTTP or HTTPS, reading HTTP chunked request bodies
as glanceclient and the dom0 plugin send them, with the file store (reading
and writing in 1 MiB chunks), a SQLite database made by ``glance-manage db
sync`` and no Keystone (``[paste_deploy] flavor`` empty: every request is an
admin's, any token is accepted).

``GlanceServer`` writes the configuration, starts uWSGI, waits until Glance
answers and stops it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from nova_xenapi.testing import rig

START_TIMEOUT = 90.0


def _uwsgi() -> str:
    """uWSGI's command, from this Python's environment (the ``uWSGI`` package) or PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    found = str(beside) if beside.exists() else shutil.which("uwsgi")
    if not found:
        raise RuntimeError("uwsgi not found: install the uWSGI package (pip install uWSGI)")
    return found


def _paste_ini() -> Path:
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        path = Path(prefix) / "etc/glance/glance-api-paste.ini"
        if path.exists():
            return path
    raise RuntimeError("glance-api-paste.ini not found: is the glance package installed?")


class GlanceServer:
    """A Glance API process keeping its images under ``workdir``."""

    server = "uWSGI"  # what serves the WSGI application

    def __init__(self, workdir: Path, tls: tuple[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.tls = tls  # (certificate file, key file)
        self.port = rig.free_port()
        self.proc: subprocess.Popen | None = None
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def _configure(self) -> Path:
        conf_dir = self.workdir / "etc"
        store = self.workdir / "images"
        staging = self.workdir / "staging"
        for d in (conf_dir, store, staging):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(_paste_ini(), conf_dir / "glance-api-paste.ini")
        (conf_dir / "glance-api.conf").write_text(f"""[DEFAULT]
enabled_backends = fs:file
enabled_import_methods = []
log_file = {self.workdir / 'glance-api.log'}
worker_self_reference_url = {self.url}
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {store}
filesystem_store_chunk_size = 1048576
[os_glance_staging_store]
filesystem_store_datadir = {staging}
[os_glance_tasks_store]
filesystem_store_datadir = {self.workdir / 'tasks'}
[database]
connection = sqlite:///{self.workdir / 'glance.sqlite'}
[paste_deploy]
flavor =
config_file = {conf_dir / 'glance-api-paste.ini'}
[oslo_policy]
enforce_new_defaults = false
enforce_scope = false
""")
        return conf_dir

    def start(self) -> GlanceServer:
        conf_dir = self._configure()
        subprocess.run([sys.executable, "-m", "glance.cmd.manage", "--config-file",
                        str(conf_dir / "glance-api.conf"), "db", "sync"],
                       check=True, capture_output=True)
        address = f"127.0.0.1:{self.port}"
        socket_arg = ["--https-socket", f"{address},{self.tls[0]},{self.tls[1]}"] if self.tls \
            else ["--http-socket", address]
        args = [_uwsgi(), *socket_arg, "--module", "glance.wsgi.api:application",
                "--virtualenv", sys.prefix, "--master", "--processes", "1", "--threads", "8",
                "--enable-threads", "--lazy-apps", "--die-on-term", "--need-app",
                "--buffer-size", "65535", "--http-auto-chunked", "--http-chunked-input",
                "--http-raw-body",
                # uwsgi.chunked_read() refuses chunks over 1 MB unless told otherwise
                "--chunked-input-limit", str(64 << 20), "--socket-timeout", "60",
                # uWSGI's http-socket closes each connection after its answer: say so, or a
                # client reusing a pooled connection meets a reset (as scripts/cloud does)
                "--add-header", "Connection: close",
                "--disable-logging", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all"]
        log = open(self.workdir / "server.log", "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OS_GLANCE_CONFIG_DIR": str(conf_dir)})
        log.close()
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = ssl._create_unverified_context() if self.tls else None  # only probing liveness
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("glance-api exited: "
                                   + (self.workdir / "server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/v2/images", timeout=2, context=context):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"glance-api did not answer on {self.url} in {START_TIMEOUT:.0f}s")

    def stop(self) -> None:
        rig.stop(self.proc)

    def __enter__(self) -> GlanceServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

