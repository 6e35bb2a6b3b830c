"""Keystone, Glance, Placement, Nova's control services and Neutron's server.

The APIs are the projects' own WSGI applications served by uWSGI, the server
their install guides and devstack use (one master, one worker, threads), each
on its own loopback port; Nova's conductor and scheduler and Neutron's RPC
server are their console scripts.  Each database is synced once (a marker in
``run/`` says so) and the first ``up`` makes the Keystone catalog: the admin
user, the service project and users, and one endpoint per service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import configs, processes
from .state import ADDRESS, State

BIN = Path(sys.prefix) / "bin"
#: service name (in the state) -> (uWSGI module, its config-dir variable, catalog type, catalog name)
APIS = {
    "keystone": ("keystone.wsgi.api:application", "OS_KEYSTONE_CONFIG_DIR", None, None),
    "glance": ("glance.wsgi.api:application", "OS_GLANCE_CONFIG_DIR", "image", "glance"),
    "placement": ("placement.wsgi.api:application", "OS_PLACEMENT_CONFIG_DIR", "placement", "placement"),
    "nova-api": ("nova.wsgi.osapi_compute:application", "OS_NOVA_CONFIG_DIR", "compute", "nova"),
    "neutron-api": ("neutron.wsgi.api:application", "OS_NEUTRON_CONFIG_DIR", "network", "neutron"),
}
CATALOG_PATHS = {"compute": "/v2.1", "placement": "", "image": "", "network": ""}


def _manage(state: State, step: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """A one-time management command (db sync and the like), logged to logs/manage.log."""
    if state.done(step):
        return
    with open(state.logs / "manage.log", "ab") as log:
        log.write(f"--- {step}: {' '.join(argv)}\n".encode())
        log.flush()
        r = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"{step} failed (exit {r.returncode}); see {state.logs / 'manage.log'}")
    state.mark(step)


def _uwsgi(state: State, name: str, env: dict[str, str]) -> None:
    module, env_var, _, _ = APIS[name]
    config_dir = state.etc / name.split("-")[0]
    processes.start(state, name, [
        str(BIN / "uwsgi"), "--http-socket", f"{ADDRESS}:{state.port(name)}", "--module", module,
        "--virtualenv", sys.prefix, "--master", "--processes", "1", "--threads", "4",
        "--enable-threads", "--lazy-apps", "--die-on-term", "--exit-on-reload", "--thunder-lock",
        "--need-app", "--buffer-size", "65535", "--http-auto-chunked", "--http-chunked-input",
        "--http-raw-body",
        # Glance reads chunked uploads with uwsgi.chunked_read(), which refuses a chunk over 1 MB
        # by default; the dom0 plugins and glanceclient send bigger ones
        "--chunked-input-limit", str(64 << 20), "--add-header", "Connection: close", "--socket-timeout", "60",
        "--disable-logging", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all"],
        env={env_var: str(config_dir), **env})


def start_keystone(state: State) -> None:
    conf = str(configs.keystone(state))
    manage = [str(BIN / "keystone-manage"), "--config-file", conf]
    _manage(state, "keystone-db", [*manage, "db_sync"])
    _manage(state, "keystone-fernet", [*manage, "fernet_setup", "--keystone-user", "root",
                                       "--keystone-group", "root"])
    _manage(state, "keystone-credential", [*manage, "credential_setup", "--keystone-user", "root",
                                           "--keystone-group", "root"])
    public = configs.url(state, "keystone", "/v3")
    _manage(state, "keystone-bootstrap", [
        *manage, "bootstrap", "--bootstrap-username", configs.ADMIN_USER,
        "--bootstrap-project-name", configs.ADMIN_PROJECT, "--bootstrap-role-name", "admin",
        "--bootstrap-service-name", "keystone", "--bootstrap-region-id", configs.REGION,
        "--bootstrap-admin-url", public, "--bootstrap-internal-url", public,
        "--bootstrap-public-url", public],
        env={"OS_BOOTSTRAP_PASSWORD": state.secret("admin")})  # not in argv, where ps shows it
    _uwsgi(state, "keystone", {})
    processes.wait_until(state, "keystone", processes.http_answers(public), 90)
    if not state.done("keystone-catalog"):
        _catalog(state)
        state.mark("keystone-catalog")


def admin_connection(state: State):
    import openstack
    return openstack.connect(auth_url=configs.keystone_url(state), username=configs.ADMIN_USER,
                             password=state.secret("admin"), project_name=configs.ADMIN_PROJECT,
                             user_domain_name="Default", project_domain_name="Default",
                             region_name=configs.REGION, identity_api_version="3")


def _catalog(state: State) -> None:
    """The service project, users (admin and service roles) and endpoints."""
    conn = admin_connection(state)
    ident = conn.identity
    project = (ident.find_project(configs.SERVICE_PROJECT, domain_id="default")
               or ident.create_project(name=configs.SERVICE_PROJECT, domain_id="default"))
    roles = {r.name: r for r in ident.roles()}
    if "service" not in roles:
        roles["service"] = ident.create_role(name="service")
    for user in configs.SERVICE_USERS:
        u = (ident.find_user(user, domain_id="default")
             or ident.create_user(name=user, password=state.secret(user), domain_id="default",
                                  default_project_id=project.id))
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(project, u, roles[role])
    for name, (_, _, service_type, catalog_name) in APIS.items():
        if service_type is None:
            continue
        svc = ident.create_service(name=catalog_name, type=service_type)
        address = configs.url(state, name, CATALOG_PATHS[service_type])
        for interface in ("public", "internal", "admin"):
            ident.create_endpoint(service_id=svc.id, interface=interface, url=address,
                                  region_id=configs.REGION)


def start_services(state: State) -> None:
    """Glance, Placement, Nova's API, conductor and scheduler, Neutron's API and RPC server."""
    glance_conf = str(configs.glance(state))
    _manage(state, "glance-db", [str(BIN / "glance-manage"), "--config-file", glance_conf, "db_sync"])
    placement_conf = str(configs.placement(state))
    _manage(state, "placement-db", [str(BIN / "placement-manage"), "--config-file", placement_conf,
                                    "db", "sync"])
    nova_conf = str(configs.nova(state))
    nm = [str(BIN / "nova-manage"), "--config-file", nova_conf]
    _manage(state, "nova-api-db", [*nm, "api_db", "sync"])
    # cell0's database is [database] connection's with "_cell0" appended (nova_cell0): the
    # default, so no URL (and password) goes on the command line
    _manage(state, "nova-cell0", [*nm, "cell_v2", "map_cell0"])
    _manage(state, "nova-cell1", [*nm, "cell_v2", "create_cell", "--name", "cell1"])
    _manage(state, "nova-db", [*nm, "db", "sync"])
    neutron_confs = [str(p) for p in configs.neutron(state)]
    neutron_args = [a for c in neutron_confs for a in ("--config-file", c)]
    _manage(state, "neutron-db", [str(BIN / "neutron-db-manage"), *neutron_args, "upgrade", "heads"])

    _uwsgi(state, "glance", {})
    _uwsgi(state, "placement", {})
    _uwsgi(state, "nova-api", {})
    _uwsgi(state, "neutron-api", {"OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"})
    for name, script, args in (("nova-conductor", "nova-conductor", ["--config-file", nova_conf]),
                               ("nova-scheduler", "nova-scheduler", ["--config-file", nova_conf]),
                               ("nova-novncproxy", "nova-novncproxy", ["--config-file", nova_conf]),
                               ("neutron-rpc-server", "neutron-rpc-server", neutron_args)):
        processes.start(state, name, [str(BIN / script), *args,
                                      "--log-file", str(state.logs / f"{name}.log")])
    for name in ("glance", "placement", "nova-api", "neutron-api"):
        processes.wait_until(state, name, processes.http_answers(configs.url(state, name)), 120)
