"""What a host needs for nova-xenapi, one step each: how to see it is missing, and how to fix it.

Every step checks before it changes anything, so running the whole list again
changes nothing; ``check`` returns None when the step is satisfied, otherwise
what is wrong.  A step that cannot be fixed automatically says what to do.
"""

from __future__ import annotations

import hashlib
import re
import stat
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nova_xenapi.agent_tools import CONFIG_ENV, TOOLS_DIR
from nova_xenapi.bootstrap.dom0_ssh import Dom0
from nova_xenapi.dom0 import FILE_SR_TYPES, PLUGIN_API_VERSION, PLUGIN_DIR
from nova_xenapi.session import XenAPISession

PLUGINS_ON_HOST = "/etc/xapi.d/plugins"
SR_MOUNT = "/var/run/sr-mount"
OVSDB_PORT = 6640
HIMN_DOM0_IP = "169.254.0.1"  # dom0's address on the host internal management network


@dataclass
class Context:
    session: XenAPISession
    dom0: Dom0
    image_handler: str
    compute_vm_uuid: str | None
    config: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> {section.key: value}
    notes: list[str] = field(default_factory=list)

    _sr: tuple[str, dict] | None = None

    def default_sr(self) -> tuple[str, dict]:
        if self._sr is None:
            pool = self.session.call_xenapi("pool.get_all")[0]
            ref = self.session.call_xenapi("pool.get_default_SR", pool)
            self._sr = ref, self.session.call_xenapi("SR.get_record", ref)
        return self._sr


@dataclass
class Step:
    name: str
    check: Callable[[Context], str | None]
    fix: Callable[[Context], None] | None  # None: the operator must act


# ---------------------------------------------------------------- plugins
def _plugin_files() -> list[Path]:
    return sorted(p for p in PLUGIN_DIR.iterdir() if p.is_file() and p.suffix == ".py")


def _plugin_problems(ctx: Context) -> list[str]:
    wrong = []
    for src in _plugin_files():
        dst = f"{PLUGINS_ON_HOST}/{src.name}"
        remote = ctx.dom0.read(dst)
        executable = bool(src.stat().st_mode & stat.S_IXUSR)
        if remote is None:
            wrong.append(f"{src.name} missing")
        elif hashlib.sha256(remote).digest() != hashlib.sha256(src.read_bytes()).digest():
            wrong.append(f"{src.name} differs")
        elif executable and not ctx.dom0.is_executable(dst):
            wrong.append(f"{src.name} not executable")
    return wrong


def check_plugins(ctx: Context) -> str | None:
    wrong = _plugin_problems(ctx)
    return f"plugins for version {PLUGIN_API_VERSION}: {', '.join(wrong)}" if wrong else None


def fix_plugins(ctx: Context) -> None:
    for src in _plugin_files():
        mode = 0o755 if src.stat().st_mode & stat.S_IXUSR else 0o644
        ctx.dom0.write(f"{PLUGINS_ON_HOST}/{src.name}", src.read_bytes(), mode)
    found = ctx.session.call_plugin("nova_plugin_version.py", "get_version", {})
    if found != PLUGIN_API_VERSION:
        raise RuntimeError(f"installed plugins answer version {found}, expected {PLUGIN_API_VERSION}")


# ---------------------------------------------------------------- storage
def check_storage(ctx: Context) -> str | None:
    _, sr = ctx.default_sr()
    if ctx.image_handler == "direct_vhd" and sr["type"] not in FILE_SR_TYPES:
        return (f"image_handler direct_vhd needs a file-based SR (ext or nfs) but the default SR "
                f"'{sr['name_label']}' is {sr['type']}: use image_handler = vdi_remote_stream, or "
                "make a file-based SR the pool's default")
    return None


def _link_step(link: str, subdir: str) -> tuple[Callable, Callable]:
    def target(ctx: Context) -> str | None:
        _, sr = ctx.default_sr()
        if sr["type"] not in FILE_SR_TYPES:
            return None  # block SRs have no directory to link into
        return f"{SR_MOUNT}/{sr['uuid']}/{subdir}"

    def check(ctx: Context) -> str | None:
        want = target(ctx)
        if want is None:
            return None
        have = ctx.dom0.readlink(link)
        if have == want:
            return None
        st = ctx.dom0.lstat(link)
        if st is not None and stat.S_ISDIR(st.st_mode) and ctx.dom0.listdir(link):
            return f"{link} is a directory with files; move them to {want} and remove it"
        return f"{link} should link to {want}" + (f" (it points at {have})" if have else "")

    def fix(ctx: Context) -> None:
        want = target(ctx)
        st = ctx.dom0.lstat(link)
        if st is not None:
            if stat.S_ISDIR(st.st_mode) and not ctx.dom0.listdir(link):
                ctx.dom0.rmdir(link)
            elif stat.S_ISLNK(st.st_mode):
                ctx.dom0.remove(link)  # a link to the wrong place
            else:
                raise RuntimeError(f"{link} exists and is not an empty directory or a link")
        ctx.dom0.makedirs(want)
        ctx.dom0.makedirs(link.rsplit("/", 1)[0] or "/")
        ctx.dom0.symlink(want, link)

    return check, fix


check_images, fix_images = _link_step("/images", "os-images")
check_guest_kernels, fix_guest_kernels = _link_step("/boot/guest", "os-guest-kernels")


# ------------------------------------------------------------------ HIMN
def _himn(ctx: Context) -> str | None:
    for ref, rec in ctx.session.call_xenapi("network.get_all_records").items():
        if rec["other_config"].get("is_host_internal_management_network") == "true":
            return ref
    return None


def check_himn(ctx: Context) -> str | None:
    if not ctx.compute_vm_uuid:
        return None  # independent compute: no HIMN
    himn = _himn(ctx)
    if himn is None:
        return "the host has no host internal management network"
    vm = ctx.session.call_xenapi("VM.get_by_uuid", ctx.compute_vm_uuid)
    for vif in ctx.session.call_xenapi("VM.get_VIFs", vm):
        if ctx.session.call_xenapi("VIF.get_network", vif) == himn:
            return None
    return f"compute VM {ctx.compute_vm_uuid} has no VIF on the host internal management network"


def fix_himn(ctx: Context) -> None:
    himn = _himn(ctx)
    vm = ctx.session.call_xenapi("VM.get_by_uuid", ctx.compute_vm_uuid)
    device = ctx.session.call_xenapi("VM.get_allowed_VIF_devices", vm)[0]
    vif = ctx.session.call_xenapi("VIF.create", {
        "device": device, "network": himn, "VM": vm, "MAC": "", "MTU": "1500",
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    if ctx.session.call_xenapi("VM.get_power_state", vm) == "Running":
        ctx.session.call_xenapi("VIF.plug", vif)


# --------------------------------------------------- integration bridge
def _bridge_step(bridge: str) -> tuple[Callable, Callable]:
    def check(ctx: Context) -> str | None:
        for rec in ctx.session.call_xenapi("network.get_all_records").values():
            if bridge in (rec["bridge"], rec["name_label"]):
                return None
        return f"no XAPI network for the integration bridge {bridge}"

    def fix(ctx: Context) -> None:
        # the network's bridge is the OVS bridge itself, so neutron's agent (integration_bridge)
        # and XAPI (which adds each VIF's port to its network's bridge) mean the same bridge
        ctx.session.call_xenapi("network.create", {
            "name_label": bridge, "name_description": "OVS integration bridge for neutron",
            "bridge": bridge, "MTU": "1500", "other_config": {}, "tags": []})

    return check, fix


# ----------------------------------------------------------------- OVSDB
def check_ovsdb(ctx: Context) -> str | None:
    status, out, err = ctx.dom0.run("ovs-vsctl --timeout=10 get-manager")
    if status != 0:
        return f"cannot read OVSDB managers: {err.strip() or status}"
    if any(re.match(rf"p?tcp:{OVSDB_PORT}\b", m) for m in out.split()):
        return None
    return f"OVSDB does not listen on port {OVSDB_PORT} for the neutron agent"


def ovsdb_address(ctx: Context) -> str:
    """Where neutron's agent reaches dom0's OVSDB: the host-internal management network from a
    compute VM on the host (nothing else can reach it), else the host's management address."""
    if ctx.compute_vm_uuid:
        return HIMN_DOM0_IP
    return ctx.session.call_xenapi("host.get_address", ctx.session.host_ref)


def fix_ovsdb(ctx: Context) -> None:
    address = ovsdb_address(ctx)
    status, _, err = ctx.dom0.run(f"ovs-vsctl --timeout=10 set-manager ptcp:{OVSDB_PORT}:{address}")
    if status != 0:
        raise RuntimeError(f"ovs-vsctl set-manager failed: {err.strip()}")


# ---------------------------------------------------------------- config
def _config_step(path: str | None, section: str,
                 values: dict[str, str] | Callable[[Context], dict[str, str]]) -> tuple[Callable, Callable]:
    """Check and fix of ``[section]`` in ``path``: ``values`` (or what ``values(ctx)`` gives, for
    values only the host can tell) must be there."""
    def wanted(ctx: Context) -> dict[str, str]:
        return values(ctx) if callable(values) else values

    def check(ctx: Context) -> str | None:
        if not path:
            return None
        have = read_section(Path(path), section)
        wrong = [k for k, v in wanted(ctx).items() if have.get(k) != v]
        return f"{path} [{section}] needs {', '.join(wrong)}" if wrong else None

    def fix(ctx: Context) -> None:
        write_section(Path(path), section, wanted(ctx))

    return check, fix


def read_section(path: Path, section: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current = None
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            current = s[1:-1].strip()
        elif current == section and "=" in s and not s.startswith(("#", ";")):
            k, v = s.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def write_section(path: Path, section: str, values: dict[str, str]) -> None:
    """Set ``values`` in ``[section]``, keeping every other line (and comment) as it was."""
    lines = path.read_text().splitlines() if path.exists() else []
    out: list[str] = []
    current = None
    done: set[str] = set()
    seen_section = False

    def flush_missing() -> None:
        for k, v in values.items():
            if k not in done:
                out.append(f"{k} = {v}")
                done.add(k)

    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            if current == section:
                flush_missing()
            current = s[1:-1].strip()
            seen_section = seen_section or current == section
        elif current == section and "=" in s and not s.startswith(("#", ";")):
            k = s.split("=", 1)[0].strip()
            if k in values:
                out.append(f"{k} = {values[k]}")
                done.add(k)
                continue
        out.append(line)
    if current == section:
        flush_missing()
    if not seen_section:
        out += (["", f"[{section}]"] if out else [f"[{section}]"])
        flush_missing()
    path.write_text("\n".join(out) + "\n")
    path.chmod(0o640)  # it holds the host's password


def all_steps(nova_conf: str | None, nova_values: dict[str, str], neutron_conf: str | None,
              neutron_values: dict[str, str]) -> list[Step]:
    agent_check, agent_fix = _config_step(neutron_conf, "agent", {
        "root_helper": f"xenapi-root-helper --config-file {neutron_conf}"})
    privsep_steps = [_config_step(neutron_conf, section, {"helper_command": privsep_helper_command(
        neutron_conf)}) for section in PRIVSEP_SECTIONS]

    def privsep_check(ctx: Context) -> str | None:
        return next((p for p in (check(ctx) for check, _ in privsep_steps) if p), None)

    def privsep_fix(ctx: Context) -> None:
        for _, fix in privsep_steps:
            fix(ctx)
    bridge = nova_values["ovs_integration_bridge"]
    # the agent manages the bridge XAPI plugs VIFs into, through the OVSDB fix_ovsdb opened
    ovs_check, ovs_fix = _config_step(neutron_conf, "ovs", lambda ctx: {
        "integration_bridge": bridge, "ovsdb_connection": f"tcp:{ovsdb_address(ctx)}:{OVSDB_PORT}"})
    bridge_check, bridge_fix = _bridge_step(bridge)
    nova_check, nova_fix = _config_step(nova_conf, "xenserver", nova_values)
    neutron_check, neutron_fix = _config_step(neutron_conf, "xenapi", neutron_values)
    return [
        Step("storage", check_storage, None),
        Step("plugins", check_plugins, fix_plugins),
        Step("images-link", check_images, fix_images),
        Step("guest-kernels-link", check_guest_kernels, fix_guest_kernels),
        Step("himn", check_himn, fix_himn),
        Step("integration-bridge", bridge_check, bridge_fix),
        Step("ovsdb", check_ovsdb, fix_ovsdb),
        Step("nova-conf", nova_check, nova_fix),
        Step("neutron-conf", neutron_check, neutron_fix),
        Step("neutron-ovsdb", ovs_check, ovs_fix),
        Step("neutron-root-helper", agent_check, agent_fix),
        Step("neutron-privsep", privsep_check, privsep_fix),
    ]


#: the privsep contexts of neutron's OVS agent (neutron/privileged/__init__.py): each starts its
#: own daemon, with its own [section] helper_command
PRIVSEP_SECTIONS = ("privsep", "privsep_ovs_vsctl", "privsep_link", "privsep_namespace",
                    "privsep_conntrack")


def privsep_helper_command(neutron_conf: str | None) -> str:
    """How the agent starts its privsep daemon: with ``agent_tools`` first on PATH, so the
    ovs-ofctl it runs is dom0's (nova_xenapi/agent_tools)."""
    scripts = sysconfig.get_path("scripts")
    path = f"{TOOLS_DIR}:{scripts}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return (f"env PATH={path} {CONFIG_ENV}={neutron_conf} {scripts}/privsep-helper "
            f"--config-file {neutron_conf}")
