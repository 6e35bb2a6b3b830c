"""A real Glance API (the ``glance`` package from PyPI) in its own process, for tests and benchmarks.

Glance no longer ships a standalone server: its API is a WSGI application
(``glance.wsgi.api``) meant for uWSGI or mod_wsgi.  Here it is served by
``cheroot`` (CherryPy's pure-Python, threaded WSGI server, which unlike the
standard library's reads HTTP chunked request bodies as glanceclient and
the dom0 plugin send them), over HTTP or HTTPS, with the file store, a
SQLite database made by ``glance-manage db sync`` and no Keystone
(``[paste_deploy] flavor`` empty: every request is an admin's, any token is
accepted).

``python -m nova_xenapi.testing.glance_server --config-dir D --port P`` is the
child process; ``GlanceServer`` writes the configuration, starts it, waits
until it answers and stops it.
"""

from __future__ import annotations

import argparse
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


def _paste_ini() -> Path:
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        path = Path(prefix) / "etc/glance/glance-api-paste.ini"
        if path.exists():
            return path
    raise RuntimeError("glance-api-paste.ini not found: is the glance package installed?")


class GlanceServer:
    """A Glance API process keeping its images under ``workdir``."""

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
        args = [sys.executable, "-m", __name__, "--config-dir", str(conf_dir),
                "--port", str(self.port)]
        if self.tls:
            args += ["--cert", self.tls[0], "--key", self.tls[1]]
        log = open(self.workdir / "server.log", "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    opts = parser.parse_args()
    os.environ["OS_GLANCE_CONFIG_DIR"] = opts.config_dir
    from cheroot import wsgi
    from glance.common import wsgi_app

    server = wsgi.Server(("127.0.0.1", opts.port), wsgi_app.init_app(), numthreads=8)
    if opts.cert:
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        server.ssl_adapter = BuiltinSSLAdapter(opts.cert, opts.key)
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
