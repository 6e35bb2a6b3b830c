"""ceilometer's compute agent on XAPI: our inspector, loaded as ceilometer loads one, on xapisim.

``[DEFAULT] hypervisor_inspector = xenapi`` makes ceilometer's
``get_hypervisor_inspector`` find ``nova_xenapi.telemetry:XenAPIInspector``
through the ``ceilometer.compute.virt`` entry point namespace.
"""
from __future__ import annotations

import time
import types

from ceilometer.compute.virt import inspector as virt
from oslo_config import cfg

from nova_xenapi import telemetry
from tests.conftest import PASSWORD
from tests.test_rrd_updates import _running


def _inspector(sim) -> telemetry.XenAPIInspector:
    telemetry.accept_xenapi_inspector()  # what ceilometer-polling-xenapi does first
    conf = cfg.ConfigOpts()
    conf.register_opts(virt.OPTS)
    conf([], project="ceilometer")
    conf.set_override("hypervisor_inspector", "xenapi")
    from nova_xenapi import conf as xconf
    xconf.register_opts(conf)
    conf.set_override("connection_url", sim.url, group="xenserver")
    conf.set_override("connection_password", PASSWORD, group="xenserver")
    inspector = virt.get_hypervisor_inspector(conf)
    assert isinstance(inspector, telemetry.XenAPIInspector)
    return inspector


def _instance(name: str):
    server = types.SimpleNamespace()
    setattr(server, "OS-EXT-SRV-ATTR:instance_name", name)
    return server


def test_each_instance_is_measured_from_one_request_per_cycle(sim, xapi, monkeypatch):
    x = xapi.xenapi
    for name in ("instance-1", "instance-2"):
        _running(x, sim, name)
    inspector = _inspector(sim)
    requests = []
    real = inspector._session.http_request

    def counted(*args, **kwargs):
        requests.append(args[1])
        return real(*args, **kwargs)
    monkeypatch.setattr(inspector._session, "http_request", counted)

    stats = {n: inspector.inspect_instance(_instance(n)) for n in ("instance-1", "instance-2")}
    vnics = list(inspector.inspect_vnics(_instance("instance-1")))
    disks = list(inspector.inspect_disks(_instance("instance-1")))
    assert requests == ["/rrd_updates"]
    s = stats["instance-1"]
    assert s.cpu_number == 1 and s.power_state == "Running"
    assert s.cpu_time > 0  # about two minutes at 2..60 % busy
    assert s.cpu_time < 120e9
    assert s.memory_actual == 256 and 0 < s.memory_usage < 256
    [(vnic)] = vnics
    assert vnic.mac == x.VIF.get_MAC(x.VM.get_VIFs(x.VM.get_by_name_label("instance-1")[0])[0])
    assert vnic.rx_bytes > 0 and vnic.tx_bytes > 0
    [disk] = disks
    assert disk.device == "xvda" and disk.read_bytes > 0 and disk.write_requests > 0

    # the next cycle: the totals only grow
    monkeypatch.setattr(telemetry, "CACHE_SECONDS", 0.0)
    time.sleep(5.1)
    later = inspector.inspect_instance(_instance("instance-1"))
    assert later.cpu_time >= s.cpu_time
    assert len(requests) == 2


def test_an_instance_not_running_here_is_not_found(sim, xapi):
    inspector = _inspector(sim)
    try:
        inspector.inspect_instance(_instance("instance-404"))
    except virt.InstanceNotFoundException:
        pass
    else:
        raise AssertionError("an unknown instance was measured")
