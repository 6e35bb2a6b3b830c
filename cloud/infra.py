"""MariaDB and RabbitMQ from the system's packages, as the cloud's own processes.

Neither touches the machine's own services: each has its data, sockets, logs
and pid under the state directory and listens on 127.0.0.1 only, on ports the
state chose.  RabbitMQ's Erlang port mapper (epmd) is started here too, on
loopback and its own port, in the foreground, so that it is stopped by pid
like the rest instead of outliving the broker as a daemon.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import processes
from .state import ADDRESS, State

DB_USER = "openstack"
DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron")
RABBIT_USER = "openstack"


def _sbin(name: str) -> str:
    for d in ("/usr/lib/rabbitmq/bin", "/usr/sbin", "/usr/bin"):
        if Path(d, name).exists():
            return str(Path(d, name))
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run scripts/setup-env --cloud to install it")
    return found


# ------------------------------------------------------------------ MariaDB
def db_url(state: State, name: str) -> str:
    return (f"mysql+pymysql://{DB_USER}:{state.secret('database')}@{ADDRESS}:"
            f"{state.port('mariadb')}/{name}?charset=utf8")


def _db_socket(state: State) -> Path:
    return state.run / "mariadb.sock"


def start_mariadb(state: State) -> None:
    datadir = state.data / "mariadb"
    if not (datadir / "mysql").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run([_sbin("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}",
                        "--user=root", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True)
    processes.start(state, "mariadb", [
        _sbin("mariadbd"), "--no-defaults", f"--datadir={datadir}", f"--socket={_db_socket(state)}",
        f"--port={state.port('mariadb')}", f"--bind-address={ADDRESS}", "--user=root",
        "--skip-name-resolve", "--innodb-buffer-pool-size=128M", "--max-connections=1000",
        "--innodb-flush-log-at-trx-commit=2", f"--log-error={state.logs / 'mariadb.log'}"])
    processes.wait_until(state, "mariadb", lambda: _sql(state, "SELECT 1") is not None, 60)
    if not state.done("databases"):
        pw = state.secret("database")
        statements = [f"CREATE DATABASE IF NOT EXISTS {d} CHARACTER SET utf8" for d in DATABASES]
        statements += [f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{ADDRESS}' IDENTIFIED BY '{pw}'",
                       f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'{ADDRESS}'", "FLUSH PRIVILEGES"]
        _sql(state, ";\n".join(statements) + ";", check=True)
        state.mark("databases")


def _sql(state: State, sql: str, check: bool = False) -> str | None:
    """Run SQL as root over the unix socket (root logs in by socket only)."""
    r = subprocess.run(["mariadb", "--no-defaults", f"--socket={_db_socket(state)}", "-uroot",
                        "-N", "-B"], input=sql, capture_output=True, text=True)
    if r.returncode != 0:
        if check:
            raise RuntimeError(f"mariadb: {r.stderr.strip()}")
        return None
    return r.stdout


# ----------------------------------------------------------------- RabbitMQ
def rabbit_url(state: State) -> str:
    return f"rabbit://{RABBIT_USER}:{state.secret('rabbit')}@{ADDRESS}:{state.port('rabbitmq')}/"


def _rabbit_env(state: State) -> dict[str, str]:
    base = state.data / "rabbitmq"
    return {
        "HOME": str(base),  # the Erlang cookie
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(state.logs),
        "RABBITMQ_LOGS": str(state.logs / "rabbitmq-broker.log"),
        "RABBITMQ_PID_FILE": str(state.run / "rabbitmq-broker.pid"),
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": ADDRESS,
        "RABBITMQ_NODE_PORT": str(state.port("rabbitmq")),
        "RABBITMQ_DIST_PORT": str(state.port("rabbitmq-dist")),
        "ERL_EPMD_ADDRESS": ADDRESS,
        "ERL_EPMD_PORT": str(state.port("epmd")),
        "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def start_rabbitmq(state: State) -> None:
    base = state.data / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq-env.conf").write_text("")
    (base / "enabled_plugins").write_text("[].\n")
    (base / "advanced.config").write_text("[].\n")
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {ADDRESS}:{state.port('rabbitmq')}\n"
        f"default_user = {RABBIT_USER}\n"
        f"default_pass = {state.secret('rabbit')}\n"
        "loopback_users = none\n"
        "log.console = false\n"
        "log.file.level = warning\n")
    env = _rabbit_env(state)
    processes.start(state, "epmd", [_sbin("epmd"), "-address", ADDRESS, "-port", env["ERL_EPMD_PORT"]],
                    env=env)
    processes.wait_until(state, "epmd", processes.tcp_open(int(env["ERL_EPMD_PORT"])), 20)
    processes.start(state, "rabbitmq", [_sbin("rabbitmq-server")], env=env)
    processes.wait_until(state, "rabbitmq", processes.tcp_open(state.port("rabbitmq")), 120)
