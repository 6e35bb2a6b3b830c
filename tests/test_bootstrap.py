"""xenapi-bootstrap against a fresh simulated host, over XAPI and SSH into its dom0."""
from __future__ import annotations

import io
import os

import pytest
import XenAPI

from nova_xenapi.bootstrap import cli
from nova_xenapi.dom0 import PLUGIN_API_VERSION, PLUGIN_DIR
from tests.conftest import PASSWORD, diskless_vm
from xapisim import SimConfig, Simulator, host_configs


@pytest.fixture
def host(tmp_path, request):
    sr_type = getattr(request, "param", "ext")
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4), sr_type=sr_type,
                       auth_failure_delay=0.01)
    with Simulator(config, tmp_path / "state", ssh_port=0) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "bootstrap-tests")
        compute = diskless_vm(s.xenapi, "compute-vm")
        s.xenapi.VM.start(compute, False, False)
        yield sim, s.xenapi, s.xenapi.VM.get_uuid(compute), tmp_path


def _run(sim, vm_uuid, tmp_path, *extra, fingerprint=True):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    args = ["--url", sim.url, "--password-file", str(pw), "--ssh-port", str(sim.ssh_port),
            "--compute-vm-uuid", vm_uuid, "--nova-conf", str(tmp_path / "nova.conf"),
            "--neutron-conf", str(tmp_path / "neutron.ini"), *extra]
    if fingerprint:
        args += ["--host-key-fingerprint", sim.ssh_fingerprint]
    out = io.StringIO()
    code = cli.run(cli.build_parser().parse_args(args), out)
    return code, out.getvalue()


def test_check_then_bootstrap_then_nothing_left_and_idempotent(host):
    sim, x, vm_uuid, tmp = host
    (tmp / "nova.conf").write_text("[DEFAULT]\n# keep this comment\ncompute_driver = xenapi.XenAPIDriver\n")
    code, out = _run(sim, vm_uuid, tmp, "--check")
    assert code == 1
    for step in ("plugins", "images-link", "guest-kernels-link", "himn", "integration-bridge", "ovsdb",
                 "nova-conf", "neutron-conf", "neutron-ovsdb", "neutron-root-helper", "neutron-privsep"):
        assert f"MISSING   {step}" in out, out
    code, out = _run(sim, vm_uuid, tmp, "--dry-run")
    assert code == 0 and "WOULD FIX plugins" in out
    assert "MISSING" in _run(sim, vm_uuid, tmp, "--check")[1], "dry-run changed something"

    code, out = _run(sim, vm_uuid, tmp)
    assert code == 0, out
    assert out.count("FIXED") == 11
    code, out = _run(sim, vm_uuid, tmp, "--check")
    assert code == 0 and "MISSING" not in out, out
    code, out = _run(sim, vm_uuid, tmp)
    assert code == 0 and "FIXED" not in out, "a second run changed something"

    root = sim.backend.dom0_root(sim.backend.master_ref)
    for plugin in PLUGIN_DIR.glob("*.py"):
        assert (root / "etc/xapi.d/plugins" / plugin.name).read_bytes() == plugin.read_bytes()
    assert os.access(root / "etc/xapi.d/plugins/console.py", os.X_OK)
    sr_uuid = x.SR.get_uuid(x.pool.get_default_SR(x.pool.get_all()[0]))
    assert (root / "images").resolve() == (root / f"var/run/sr-mount/{sr_uuid}/os-images").resolve()
    assert (root / "boot/guest").is_symlink()
    assert "ptcp:6640:169.254.0.1" in (root / "etc/openvswitch/conf.json").read_text()  # HIMN
    assert x.network.get_bridge(x.network.get_by_name_label("br-int")[0]) == "br-int"
    vm = x.VM.get_by_uuid(vm_uuid)
    nets = [x.network.get_other_config(x.VIF.get_network(v)) for v in x.VM.get_VIFs(vm)]
    assert any(n.get("is_host_internal_management_network") == "true" for n in nets)
    nova = (tmp / "nova.conf").read_text()
    assert "# keep this comment" in nova and "compute_driver = xenapi.XenAPIDriver" in nova
    assert f"connection_url = {sim.url}" in nova and "image_handler = direct_vhd" in nova
    agent = (tmp / "neutron.ini").read_text()
    assert "[xenapi]" in agent
    # the agent reaches the OVSDB bootstrap opened, and manages the bridge XAPI plugs VIFs into
    assert "ovsdb_connection = tcp:169.254.0.1:6640" in agent and "integration_bridge = br-int" in agent
    assert oct((tmp / "nova.conf").stat().st_mode & 0o777) == "0o640"
    host = x.host.get_all()[0]
    assert x.host.call_plugin(host, "nova_plugin_version.py", "get_version", {}) == PLUGIN_API_VERSION


def test_an_unknown_host_key_is_refused(host):
    sim, x, vm_uuid, tmp = host
    code, out = _run(sim, vm_uuid, tmp, "--check", fingerprint=False)
    assert code == 2 and "not trusted" in out and sim.ssh_fingerprint in out


@pytest.mark.parametrize("host", ["lvm"], indirect=True)
def test_direct_vhd_on_an_lvm_sr_is_an_error_up_front(host):
    sim, x, vm_uuid, tmp = host
    code, out = _run(sim, vm_uuid, tmp, "--image-handler", "direct_vhd")
    assert code == 1
    assert "ERROR     storage: image_handler direct_vhd needs a file-based SR" in out
    assert "ok        images-link" in out  # block SRs have nothing to link


def test_independent_compute_writes_a_config_the_driver_accepts(host):
    """Without a compute VM, bootstrap writes independent_compute = True and check_host = False:
    the driver refuses check_host with independent compute (there is no VM to check), so a
    nova-compute started on bootstrap's config alone must not stop at init_host."""
    sim, x, _, tmp = host
    code, out = _run(sim, "", tmp)
    assert code == 0 and "independent compute" in out, out
    nova = (tmp / "nova.conf").read_text()
    assert "independent_compute = True" in nova and "check_host = False" in nova
    # no HIMN without a compute VM: OVSDB listens on the host's management address
    address = x.host.get_address(x.host.get_all()[0])
    root = sim.backend.dom0_root(sim.backend.master_ref)
    assert f"ptcp:6640:{address}" in (root / "etc/openvswitch/conf.json").read_text()
    assert f"ovsdb_connection = tcp:{address}:6640" in (tmp / "neutron.ini").read_text()
