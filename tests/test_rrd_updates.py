"""xapisim's /rrd_updates against xapi's: xapi-rrd's rrd_updates.ml (the xport document),
rrdd_proxy.ml (``start`` is required; the connection closes), xcp-rrdd's data source names.

Not confirmed against a real host: the exact archive a given ``interval`` picks, and that
a VM's rows before its start are NaN rather than absent.
"""
from __future__ import annotations

import math
import time
import urllib.error
import urllib.request

import pytest

from nova_xenapi.telemetry import parse_updates
from tests.conftest import diskless_vm, local_sr
from xapisim.values import from_epoch


def _running(x, sim, name="rrd-guest"):
    vm = diskless_vm(x, name)
    host = x.host.get_all()[0]
    vdi = x.VDI.create({"name_label": "d", "SR": local_sr(x, host), "virtual_size": str(8 << 20),
                        "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    net = x.PIF.get_network(x.host.get_PIFs(host)[0])
    x.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    # it has been running for two minutes
    store = sim.backend.store
    metrics = store.get("VM", vm)["metrics"]
    store.set("VM_metrics", metrics, start_time=from_epoch(time.time() - 120))
    return vm


def _get(sim, xapi, **query):
    q = "&".join(f"{k}={v}" for k, v in {"session_id": xapi._session, **query}.items())
    with urllib.request.urlopen(f"{sim.url}/rrd_updates?{q}") as r:
        assert r.headers["Connection"] == "close"
        return r.read()


def test_the_vms_data_sources_by_xcp_rrdds_names(sim, xapi):
    x = xapi.xenapi
    vm = _running(x, sim)
    uuid = x.VM.get_uuid(vm)
    step, legend, rows = parse_updates(_get(sim, xapi, start=int(time.time()) - 300, host="true"))
    assert step == 5
    names = {e.split(":", 3)[3] for e in legend if e.startswith(f"AVERAGE:vm:{uuid}:")}
    assert {"cpu0", "memory", "memory_internal_free", "vif_0_rx", "vif_0_tx", "vbd_xvda_read",
            "vbd_xvda_write", "vbd_xvda_iops_read", "vbd_xvda_iops_write"} <= names
    host_uuid = x.host.get_uuid(x.host.get_all()[0])
    assert f"AVERAGE:host:{host_uuid}:memory_total_kib" in legend
    times = [t for t, _ in rows]
    assert times == sorted(times, reverse=True) and times[0] - times[1] == 5
    col = {e: i for i, e in enumerate(legend)}
    newest = rows[0][1]
    assert 0 <= newest[col[f"AVERAGE:vm:{uuid}:cpu0"]] <= 1
    assert newest[col[f"AVERAGE:vm:{uuid}:memory"]] == float(x.VM.get_memory_dynamic_max(vm))
    assert newest[col[f"AVERAGE:vm:{uuid}:vif_0_rx"]] > 0
    # rows older than the VM's start have no value
    old = [v[col[f"AVERAGE:vm:{uuid}:cpu0"]] for t, v in rows if t < time.time() - 130]
    assert old and all(math.isnan(v) for v in old)
    # the same step reads the same on the next request
    _, legend2, rows2 = parse_updates(_get(sim, xapi, start=int(time.time()) - 300))
    same = dict(rows2)[rows[2][0]][legend2.index(f"AVERAGE:vm:{uuid}:cpu0")]
    assert same == rows[2][1][col[f"AVERAGE:vm:{uuid}:cpu0"]]


def test_paused_idle_halted_gone(sim, xapi):
    x = xapi.xenapi
    vm = _running(x, sim)
    uuid = x.VM.get_uuid(vm)
    x.VM.pause(vm)
    _, legend, rows = parse_updates(_get(sim, xapi, start=int(time.time()) - 60))
    assert rows[0][1][legend.index(f"AVERAGE:vm:{uuid}:cpu0")] == 0.0
    assert rows[0][1][legend.index(f"AVERAGE:vm:{uuid}:vbd_xvda_write")] == 0.0
    x.VM.hard_shutdown(vm)
    _, legend, _ = parse_updates(_get(sim, xapi, start=int(time.time()) - 60))
    assert not [e for e in legend if uuid in e]


def test_start_is_required_and_the_session_too(sim, xapi):
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(sim, xapi)
    assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{sim.url}/rrd_updates?start=0&session_id=OpaqueRef:nope")
    assert e.value.code == 401


def test_vm_rrd_and_host_rrd_are_xapi_rrd_documents(sim, xapi):
    """rrd.ml ``xml_to_output``: version 0003, the data sources, four AVERAGE archives whose
    rows (oldest first) hold one value per data source; ``uuid`` is required for /vm_rrd."""
    from xml.etree import ElementTree
    x = xapi.xenapi
    vm = _running(x, sim)
    uuid = x.VM.get_uuid(vm)
    q = f"session_id={xapi._session}"
    with urllib.request.urlopen(f"{sim.url}/vm_rrd?uuid={uuid}&{q}") as r:
        doc = ElementTree.fromstring(r.read())
    assert doc.findtext("version") == "0003" and doc.findtext("step") == "5"
    names = [d.findtext("name") for d in doc.findall("ds")]
    assert {"cpu0", "memory", "vif_0_rx", "vbd_xvda_write"} <= set(names)
    types = {d.findtext("name"): d.findtext("type") for d in doc.findall("ds")}
    assert types["cpu0"] == "GAUGE" and types["vif_0_rx"] == "DERIVE"
    rras = doc.findall("rra")
    assert [r.findtext("pdp_per_row") for r in rras] == ["1", "12", "720", "17280"]
    rows = rras[0].findall("database/row")
    assert len(rows) == 120 and all(len(r.findall("v")) == len(names) for r in rows)
    newest = [v.text for v in rows[-1].findall("v")]
    assert newest[names.index("memory")] != "NaN"
    with urllib.request.urlopen(f"{sim.url}/host_rrd?{q}") as r:
        host = ElementTree.fromstring(r.read())
    assert "memory_total_kib" in [d.findtext("name") for d in host.findall("ds")]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{sim.url}/vm_rrd?{q}")
    assert e.value.code == 400
