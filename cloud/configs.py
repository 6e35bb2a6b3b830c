"""The cloud's configuration files, one per service, written under ``etc/``.

They are what an operator would write for these services on one host, with
every address on loopback and every secret from the state's ``secrets.json``.
Files are rewritten on each ``up`` (ports and secrets are kept, so they only
change when this code does); the compute hosts' ``[xenserver]`` sections are
written by ``xenapi-bootstrap`` itself, into a file of their own.
"""

from __future__ import annotations

import configparser
import shutil
import sys
from pathlib import Path

from .infra import db_url, rabbit_url
from .state import ADDRESS, State

REGION = "RegionOne"
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
SERVICE_PROJECT = "service"
#: the service users, each with role admin in project service
SERVICE_USERS = ("glance", "placement", "nova", "neutron")
PHYSNET = "physnet1"
PROVIDER_BRIDGE = "br-ex"


def url(state: State, service: str, path: str = "") -> str:
    return f"http://{ADDRESS}:{state.port(service)}{path}"


def keystone_url(state: State) -> str:
    return url(state, "keystone", "/v3")


def write_ini(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    cp = configparser.RawConfigParser()
    cp.optionxform = str  # keep the options' case
    for section, options in sections.items():
        if section != "DEFAULT":
            cp.add_section(section)
        for key, value in options.items():
            cp.set(section, key, str(value).lower() if isinstance(value, bool) else str(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        cp.write(f)
    path.chmod(0o600)
    return path


def _auth(state: State, user: str) -> dict[str, str]:
    """A service user's keystoneauth password plugin options."""
    return {"auth_type": "password", "auth_url": keystone_url(state), "username": user,
            "password": state.secret(user), "project_name": SERVICE_PROJECT,
            "user_domain_name": "Default", "project_domain_name": "Default", "region_name": REGION}


def _authtoken(state: State, user: str) -> dict[str, str]:
    return {"www_authenticate_uri": url(state, "keystone"), **_auth(state, user),
            "service_token_roles_required": "true"}


def _common(state: State, log: str, service: str) -> dict[str, object]:
    return {"debug": False, "log_file": str(state.logs / f"{log}.log"),
            "use_stderr": False, "state_path": str(state.data / service)}


def _service_dir(state: State, service: str) -> Path:
    d = state.etc / service
    d.mkdir(parents=True, exist_ok=True)
    (state.data / service).mkdir(parents=True, exist_ok=True)
    return d


def _paste(service: str, name: str, into: Path) -> None:
    src = Path(sys.prefix) / "etc" / service / name
    if not src.exists():
        raise RuntimeError(f"{src} not found: is the {service} package installed in {sys.prefix}?")
    shutil.copyfile(src, into / name)


def keystone(state: State) -> Path:
    d = _service_dir(state, "keystone")
    return write_ini(d / "keystone.conf", {
        "DEFAULT": {"debug": False, "log_file": str(state.logs / "keystone.log"), "use_stderr": False},
        "database": {"connection": db_url(state, "keystone")},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": str(state.data / "keystone" / "fernet-keys")},
        "fernet_receipts": {"key_repository": str(state.data / "keystone" / "fernet-keys")},
        "credential": {"key_repository": str(state.data / "keystone" / "credential-keys")},
        # bcrypt's fewest rounds: its default 12 cost keystone a quarter of a CPU second per
        # login (every CLI command and service session logs in), the most CPU of any service
        # here; the cost guards hashes stolen from a database, and this one holds random
        # passwords of a cloud on loopback that lives for one run
        "identity": {"password_hash_rounds": 4},
        # what tokens, roles and the catalog resolve to, kept between requests (as devstack
        # does with memcached): every service validates each request's token here. In
        # process memory, which is exact for keystone's one uwsgi process
        "cache": {"enabled": True, "backend": "dogpile.cache.memory"},
    })


def glance(state: State) -> Path:
    d = _service_dir(state, "glance")
    _paste("glance", "glance-api-paste.ini", d)
    store = state.data / "glance" / "images"
    store.mkdir(parents=True, exist_ok=True)
    return write_ini(d / "glance-api.conf", {
        "DEFAULT": {**_common(state, "glance", "glance"), "enabled_backends": "fs:file",
                    "worker_self_reference_url": url(state, "glance")},
        "database": {"connection": db_url(state, "glance")},
        "keystone_authtoken": _authtoken(state, "glance"),
        "paste_deploy": {"flavor": "keystone"},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": str(store)},
        "os_glance_staging_store": {"filesystem_store_datadir": str(state.data / "glance" / "staging")},
        "os_glance_tasks_store": {"filesystem_store_datadir": str(state.data / "glance" / "tasks")},
        "oslo_concurrency": {"lock_path": str(state.data / "glance" / "locks")},
    })


def placement(state: State) -> Path:
    d = _service_dir(state, "placement")
    return write_ini(d / "placement.conf", {
        "DEFAULT": {"debug": False, "log_file": str(state.logs / "placement.log"),
                    "use_stderr": False},
        "placement_database": {"connection": db_url(state, "placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken(state, "placement"),
    })


def nova_common(state: State, log: str) -> dict[str, dict[str, object]]:
    """What every Nova service needs: the message bus, Keystone, Placement, Neutron, Glance."""
    return {
        "DEFAULT": {**_common(state, log, "nova"), "transport_url": rabbit_url(state), "my_ip": ADDRESS},
        "service_user": {"send_service_user_token": True, **_auth(state, "nova")},
        "placement": _auth(state, "placement"),
        "neutron": {**_auth(state, "neutron"), "service_metadata_proxy": False},
        "glance": {"region_name": REGION},
        "cinder": {"os_region_name": REGION},
        "oslo_concurrency": {"lock_path": str(state.data / "nova" / "locks")},
        "oslo_messaging_notifications": {"driver": "noop"},
        "vnc": {"enabled": True, "novncproxy_base_url": url(state, "novncproxy", "/vnc_lite.html")},
    }


def nova(state: State) -> Path:
    """nova.conf of the API, conductor and scheduler (the only ones with database access)."""
    d = _service_dir(state, "nova")
    _paste("nova", "api-paste.ini", d)
    sections = nova_common(state, "nova-api")
    sections["DEFAULT"].update({"osapi_compute_listen": ADDRESS, "metadata_listen": ADDRESS})
    sections.update({
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": db_url(state, "nova_api")},
        "database": {"connection": db_url(state, "nova")},
        "wsgi": {"api_paste_config": str(d / "api-paste.ini")},
        "keystone_authtoken": _authtoken(state, "nova"),
        "scheduler": {"discover_hosts_in_cells_interval": 2, "workers": 1},
        "conductor": {"workers": 1},
    })
    # nova-novncproxy (it validates tokens in the cell database): no noVNC pages are served,
    # only the WebSocket a viewer opens
    web = state.data / "novnc"
    web.mkdir(parents=True, exist_ok=True)
    sections["DEFAULT"]["web"] = str(web)
    sections["vnc"].update({"novncproxy_host": ADDRESS, "novncproxy_port": state.port("novncproxy")})
    return write_ini(d / "nova.conf", sections)


def nova_compute(state: State, name: str, host_address: str) -> Path:
    """A compute service's whole config: no database (Nova forbids it there); [xenserver] is
    written by xenapi-bootstrap and kept when this file is written again."""
    d = _service_dir(state, "nova")
    path = d / f"{name}.conf"
    sections = nova_common(state, name)
    sections["DEFAULT"].update({"host": name, "compute_driver": "xenapi.XenAPIDriver",
                                "state_path": str(state.data / name),
                                "instances_path": str(state.data / name / "instances")})
    sections["oslo_concurrency"] = {"lock_path": str(state.data / name / "locks")}
    sections["vnc"].update({"server_listen": ADDRESS, "server_proxyclient_address": host_address})
    sections["compute"] = {"provider_config_location": str(d / "provider_config")}
    # the simulated hosts answer plain HTTP on this port where a real XenServer uses 80 (the
    # option's default): nova-novncproxy's CONNECT /console goes there
    sections["xenserver"] = {"console_http_port": state.port("xapisim-http")}
    # Nova keeps the node's identity (compute_id) in state_path and refuses to restart without it
    (state.data / name / "instances").mkdir(parents=True, exist_ok=True)
    return _write_keeping(path, sections)


def _write_keeping(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    """Write ``sections``, keeping every other option already in the file (what
    xenapi-bootstrap wrote there, and anything the operator added)."""
    kept = configparser.RawConfigParser()
    kept.optionxform = str
    if path.exists():
        kept.read(path)
    for section in kept.sections():
        for key, value in kept.items(section):
            sections.setdefault(section, {}).setdefault(key, value)
    return write_ini(path, sections)


#: what each host's ceilometer-polling measures, often enough for the smoke test to see it
POLLING_YAML = """---
sources:
  - name: xenapi
    interval: 15
    meters:
      - cpu
      - memory.usage
      - network.incoming.bytes
      - disk.device.read.bytes
"""


def ceilometer_polling(state: State, name: str, compute_conf: Path) -> Path:
    """ceilometer-polling beside one nova-compute: the compute namespace, our XAPI inspector
    with that compute's [xenserver] connection, instances found through Nova's API, samples
    exported for Prometheus on loopback (no notification agent or bus needed)."""
    d = _service_dir(state, "ceilometer")
    (d / "polling.yaml").write_text(POLLING_YAML)
    compute = configparser.RawConfigParser()
    compute.optionxform = str
    compute.read(compute_conf)
    xs = dict(compute["xenserver"]) if compute.has_section("xenserver") else {}
    sections = {
        "DEFAULT": {"host": name, "hypervisor_inspector": "xenapi", "debug": False,
                    "log_file": str(state.logs / f"{name}-ceilometer.log")},
        "compute": {"instance_discovery_method": "naive", "resource_update_interval": 15},
        "polling": {"cfg_file": str(d / "polling.yaml"), "enable_notifications": False,
                    "enable_prometheus_exporter": True,
                    "prometheus_listen_addresses": f"{ADDRESS}:{state.port(f'{name}-ceilometer')}"},
        "service_credentials": {**_auth(state, "nova"), "interface": "public"},
        "xenserver": {k: v for k, v in xs.items() if k in (
            "connection_url", "connection_username", "connection_password", "ca_file",
            "certificate_thumbprint", "verify_ssl")},
    }
    return write_ini(d / f"{name}.conf", sections)


def ovs_agent(state: State, name: str) -> Path:
    """neutron-openvswitch-agent of one host: OVSDB in that host's dom0, OpenFlow from that
    dom0's ovs-vswitchd to this agent, security groups as flows (firewall_driver openvswitch).
    [xenapi], [agent] root_helper, [privsep*] and [ovs] integration_bridge and ovsdb_connection
    are xenapi-bootstrap's."""
    d = _service_dir(state, "neutron")
    return _write_keeping(d / f"{name}-ovs-agent.ini", {
        "DEFAULT": {"host": name, "transport_url": rabbit_url(state), "debug": False,
                    "log_file": str(state.logs / f"{name}-ovs-agent.log"), "use_stderr": False,
                    "state_path": str(state.data / f"{name}-ovs-agent")},
        "agent": {"tunnel_types": "", "l2_population": False},
        "ovs": {"of_listen_address": ADDRESS, "of_listen_port": state.port(f"{name}-openflow"),
                "bridge_mappings": f"{PHYSNET}:xenbr0", "datapath_type": "netdev"},
        "securitygroup": {"firewall_driver": "openvswitch", "enable_security_group": True},
        "oslo_concurrency": {"lock_path": str(state.data / f"{name}-ovs-agent" / "locks")},
    })


def neutron(state: State) -> list[Path]:
    d = _service_dir(state, "neutron")
    _paste("neutron", "api-paste.ini", d)
    server = write_ini(d / "neutron.conf", {
        "DEFAULT": {**_common(state, "neutron-api", "neutron"), "core_plugin": "ml2", "service_plugins": "",
                    "auth_strategy": "keystone", "transport_url": rabbit_url(state),
                    "api_paste_config": str(d / "api-paste.ini"),
                    "notify_nova_on_port_status_changes": True,
                    "notify_nova_on_port_data_changes": True, "rpc_workers": 1,
                    "rpc_state_report_workers": 1, "api_workers": 1},
        "database": {"connection": db_url(state, "neutron")},
        "keystone_authtoken": _authtoken(state, "neutron"),
        "nova": _auth(state, "nova"),
        "oslo_concurrency": {"lock_path": str(state.data / "neutron" / "locks")},
        "oslo_messaging_notifications": {"driver": "noop"},
    })
    ml2 = write_ini(d / "ml2_conf.ini", {
        "ml2": {"type_drivers": "flat,vlan", "tenant_network_types": "vlan",
                "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"},
        "ml2_type_flat": {"flat_networks": PHYSNET},
        "ml2_type_vlan": {"network_vlan_ranges": f"{PHYSNET}:100:199"},
        "securitygroup": {"enable_security_group": True},
    })
    return [server, ml2]


def clouds_yaml(state: State) -> Path:
    path = state.root / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  nova-xenapi:\n"
        "    auth:\n"
        f"      auth_url: {keystone_url(state)}\n"
        f"      username: {ADMIN_USER}\n"
        f"      password: {state.secret('admin')}\n"
        f"      project_name: {ADMIN_PROJECT}\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        f"    region_name: {REGION}\n"
        "    identity_api_version: 3\n")
    path.chmod(0o600)
    openrc = state.root / "openrc"
    openrc.write_text(
        f"export OS_AUTH_URL={keystone_url(state)}\n"
        f"export OS_USERNAME={ADMIN_USER}\n"
        f"export OS_PASSWORD={state.secret('admin')}\n"
        f"export OS_PROJECT_NAME={ADMIN_PROJECT}\n"
        "export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
        f"export OS_REGION_NAME={REGION}\nexport OS_IDENTITY_API_VERSION=3\n")
    openrc.chmod(0o600)
    return path
