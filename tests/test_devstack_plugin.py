"""devstack/plugin.sh run as stack.sh would run it, against xapisim.

devstack itself cannot run here (it wants to own the machine), so its helpers
(``iniset``, ``setup_develop``, ``run_process``, ``stop_process``, ``die``) are
stand-ins that do what devstack's do to files, or record the call; ``sudo``
runs the command as is.  What the plugin does itself runs for real:
``xenapi-bootstrap`` prepares the simulated host over XAPI and SSH and writes
nova-cpu.conf and the dom0 agent's config, with stack.sh's xtrace on.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest
import XenAPI

from nova_xenapi.testing.xapi_objects import diskless_vm
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs

REPO = Path(__file__).resolve().parents[1]

STUBS = r"""
die() { echo "die: $*" >&2; exit 1; }
iniset() {
    "$PYTHON" - "$@" <<'PY'
import configparser, sys
path, section, option, value = sys.argv[1:5]
c = configparser.RawConfigParser(); c.optionxform = str; c.read(path)
if section != "DEFAULT" and not c.has_section(section):
    c.add_section(section)
c.set(section, option, value)
with open(path, "w") as f:
    c.write(f)
PY
}
setup_develop() { echo "setup_develop $*" >> "$CALLS"; }
run_process() { echo "run_process $1 $2" >> "$CALLS"; }
stop_process() { echo "stop_process $*" >> "$CALLS"; }
enable_service() { echo "enable_service $*" >> "$CALLS"; }
"""


@pytest.fixture
def devstack(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), auth_failure_delay=0.01)
    with Simulator(config, tmp_path / "state", ssh_port=0) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "devstack-tests")
        compute = diskless_vm(s.xenapi, "devstack-vm")
        s.xenapi.VM.start(compute, False, False)
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (bindir / "sudo").chmod(0o755)
        etc = tmp_path / "etc"
        (etc / "nova").mkdir(parents=True)
        (etc / "neutron").mkdir()
        (etc / "nova" / "nova-cpu.conf").write_text("[DEFAULT]\nhost = devstack-vm\n")
        (etc / "neutron" / "ml2_conf.ini").write_text(
            "[ovs]\nintegration_bridge = br-int\nbridge_mappings = public:br-ex\n")
        env = {
            "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHON": sys.executable,
            "CALLS": str(tmp_path / "calls"), "DEST": str(tmp_path / "dest"),
            "STACK_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
            "NOVA_CONF_DIR": str(etc / "nova"), "NOVA_CPU_CONF": str(etc / "nova" / "nova-cpu.conf"),
            "NEUTRON_CONF": str(etc / "neutron" / "neutron.conf"),
            "NEUTRON_CORE_PLUGIN_CONF": str(etc / "neutron" / "ml2_conf.ini"),
            "NOVA_BIN_DIR": str(Path(sys.executable).parent),
            "NEUTRON_BIN_DIR": str(Path(sys.executable).parent),
            "OVS_BRIDGE": "br-int", "TEMPEST_CONFIG": str(tmp_path / "tempest.conf"),
            "NOVA_XENAPI_DOM0_AGENT_CONF": str(etc / "neutron" / "openvswitch_agent_dom0.ini"),
            "XENAPI_CONNECTION_URL": sim.url, "XENAPI_PASSWORD": PASSWORD,
            "XENAPI_HOST_KEY_FINGERPRINT": sim.ssh_fingerprint, "XENAPI_SSH_PORT": str(sim.ssh_port),
            "XENAPI_COMPUTE_VM_UUID": s.xenapi.VM.get_uuid(compute),
        }
        yield sim, env, etc, tmp_path


def _stack(env: dict, *phases: tuple[str, str]) -> subprocess.CompletedProcess:
    """Source settings and plugin.sh once per phase, as stack.sh does, with xtrace on."""
    script = STUBS + "set -o errexit -o xtrace\n" + "".join(
        f"source {REPO}/devstack/settings\nsource {REPO}/devstack/plugin.sh {mode} {phase}\n"
        for mode, phase in phases)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)


def _ini(path: Path) -> configparser.RawConfigParser:
    c = configparser.RawConfigParser()
    c.optionxform = str
    c.read(path)
    return c


def test_stack_prepares_the_host_and_writes_both_configs(devstack):
    sim, env, etc, tmp = devstack
    r = _stack(env, ("stack", "install"), ("stack", "post-config"), ("stack", "extra"),
               ("stack", "test-config"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert PASSWORD not in r.stdout + r.stderr, "the password is in stack.sh's output"
    secret = etc / "nova" / "xenserver-password"
    assert secret.read_text().strip() == PASSWORD and secret.stat().st_mode & 0o777 == 0o600

    nova = _ini(etc / "nova" / "nova-cpu.conf")
    host = sim.url.split("/")[2].split(":")[0]
    assert nova.get("DEFAULT", "compute_driver") == "xenapi.XenAPIDriver"
    assert nova.get("DEFAULT", "host") == host
    assert nova.get("xenserver", "connection_url") == sim.url
    assert nova.get("xenserver", "ovs_integration_bridge") == "br-int"

    agent = _ini(etc / "neutron" / "openvswitch_agent_dom0.ini")
    assert agent.get("DEFAULT", "host") == host  # the same host nova-compute reports, for binding
    assert agent.get("ovs", "ovsdb_connection") == "tcp:169.254.0.1:6640"  # dom0 over the HIMN
    assert agent.get("ovs", "bridge_mappings") == "public:br-ex"  # devstack's own is kept
    assert agent.get("securitygroup", "firewall_driver") == "openvswitch"
    assert agent.get("xenapi", "connection_url") == sim.url
    assert agent.get("agent", "root_helper").startswith("xenapi-root-helper")
    # devstack's own agent config is left for devstack's own agent (domU's switch)
    assert not _ini(etc / "neutron" / "ml2_conf.ini").has_section("xenapi")

    calls = (tmp / "calls").read_text().splitlines()
    assert "enable_service neutron-agent-dom0" in calls
    assert f"setup_develop {tmp / 'dest' / 'nova-xenapi'}" in calls
    agent_run = [c for c in calls if c.startswith("run_process neutron-agent-dom0 ")]
    assert len(agent_run) == 1
    assert f"--config-file {etc / 'neutron' / 'openvswitch_agent_dom0.ini'}" in agent_run[0]
    assert _ini(tmp / "tempest.conf").get("compute", "volume_device_name") == "xvdb"

    # the host is ready: a second bootstrap --check finds nothing missing
    check = subprocess.run([f"{env['NOVA_BIN_DIR']}/xenapi-bootstrap", "--url", sim.url,
                            "--password-file", str(secret), "--ssh-port", str(sim.ssh_port),
                            "--host-key-fingerprint",
                            sim.ssh_fingerprint, "--compute-vm-uuid", env["XENAPI_COMPUTE_VM_UUID"],
                            "--nova-conf", str(etc / "nova" / "nova-cpu.conf"), "--neutron-conf",
                            str(etc / "neutron" / "openvswitch_agent_dom0.ini"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    r = _stack(env, ("unstack", ""), ("clean", ""))
    assert r.returncode == 0, r.stderr
    assert "stop_process neutron-agent-dom0" in (tmp / "calls").read_text()
    assert not secret.exists()


def test_stack_without_the_host_settings_dies_with_what_to_set(devstack):
    _, env, _, _ = devstack
    env = {**env, "XENAPI_CONNECTION_URL": ""}
    r = _stack(env, ("stack", "post-config"))
    assert r.returncode != 0
    assert "set XENAPI_CONNECTION_URL and XENAPI_PASSWORD" in r.stderr
