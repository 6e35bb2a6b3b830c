"""ceilometer-compute on XAPI: an inspector that reads the host's RRDs, one request per cycle.

Ceilometer 27 has no XenAPI inspector any more. This one is registered in
ceilometer's ``ceilometer.compute.virt`` namespace, so ``[DEFAULT]
hypervisor_inspector = xenapi`` in ceilometer.conf loads it, with the
``[xenserver]`` connection options nova-compute uses (``connection_url``
naming this host). Ceilometer 27 declares that (deprecated) option with the
one choice ``libvirt``, so its config refuses ``xenapi``: run
``ceilometer-polling-xenapi`` (``polling_main``), which is ceilometer-polling
with ``xenapi`` among the choices, nothing else changed.

Each polling cycle costs two requests for the whole host, not calls per VM:
``VM.get_all_records_where`` (which VMs run here, their devices) and xapi's
``GET /rrd_updates`` of this host (xcp-rrdd's data sources for every VM
resident on it); the answers are kept for ``CACHE_SECONDS``, the time a
cycle's pollsters take, so every instance's pollsters share them.

From xcp-rrdd's names: ``cpu<N>`` (busy fraction of vCPU N), ``memory`` and
``memory_internal_free`` (what the guest reports, KiB), ``vif_<N>_rx``/``_tx``
(bytes/s) and ``vbd_<dev>_read``/``_write`` with ``_iops_read``/``_iops_write``.
The RRDs hold rates, while ceilometer's ``cpu``, ``network.*.bytes`` and
``disk.device.*`` meters are running totals: the inspector adds up rate x
step over the rows it has seen, from the first row it reads for an instance
(so a total starts when ceilometer first sees the VM, as a counter does
after an agent restart).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any
from xml.etree import ElementTree

from ceilometer.compute.pollsters import util
from ceilometer.compute.virt import inspector as virt
from oslo_log import log as logging
from oslo_utils import units

from nova_xenapi import conf as xconf
from nova_xenapi import session as xsession
from nova_xenapi.errors import HostConnectionError, XenAPIError

LOG = logging.getLogger(__name__)
CACHE_SECONDS = 10.0
#: how far back the first request of an inspector reaches (xcp-rrdd's 5 s archive: 10 minutes)
HISTORY = 600


def accept_xenapi_inspector() -> None:
    """Let ceilometer's ``hypervisor_inspector`` option name ``xenapi`` (it allows only libvirt)."""
    from oslo_config import types
    for opt in virt.OPTS:
        if opt.name == "hypervisor_inspector" and "xenapi" not in (opt.type.choices or {}):
            opt.type = types.String(choices=[*(opt.type.choices or ()), "xenapi"])


def polling_main() -> None:
    """``ceilometer-polling`` that accepts ``hypervisor_inspector = xenapi``."""
    accept_xenapi_inspector()
    from ceilometer.cmd import polling
    polling.main()


def parse_updates(body: bytes) -> tuple[int, list[str], list[tuple[int, list[float]]]]:
    """(step, legend, rows newest first) of xapi's ``xport`` document."""
    root = ElementTree.fromstring(body)
    step = int(root.findtext("meta/step"))
    legend = [e.text or "" for e in root.findall("meta/legend/entry")]
    rows = [(int(r.findtext("t")), [float(v.text) for v in r.findall("v")])
            for r in root.findall("data/row")]
    return step, legend, rows


class _Series:
    """One data source's rows, and the running total of rate x step over them."""

    def __init__(self) -> None:
        self.last: float = math.nan  # the newest value
        self.total = 0.0
        self._newest = -1

    def add(self, t: int, value: float, step: int) -> None:
        """A row, oldest first; rows already counted (an overlapping request) are skipped."""
        if math.isnan(value) or t <= self._newest:
            return
        self._newest = t
        self.total += value * step
        self.last = value


class XenAPIInspector(virt.Inspector):
    def __init__(self, conf: Any) -> None:
        super().__init__(conf)
        xconf.register_opts(conf)
        self._session = xsession.from_conf(conf)
        self._lock = threading.Lock()
        self._fetched = 0.0
        self._vms: dict[str, dict] = {}  # name_label -> VM record
        self._series: dict[tuple[str, str], _Series] = {}  # (vm uuid, data source)
        self._last_t = 0
        self._address = ""

    # ------------------------------------------------------------ the cycle
    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._fetched < CACHE_SECONDS:
                return
            s = self._session
            try:
                if not self._address:
                    self._address = s.call_xenapi("host.get_address", s.host_ref)
                self._vms = {r["name_label"]: r for r in s.call_xenapi(
                    "VM.get_all_records_where",
                    f'field "resident_on"="{s.host_ref}" and field "is_control_domain"="false"'
                ).values()}
                start = self._last_t or int(time.time()) - HISTORY
                with s.http_request("GET", "/rrd_updates",
                                    {"start": str(start), "cf": "AVERAGE", "interval": "5"},
                                    address=self._address) as (conn, target):
                    conn.request("GET", target)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise virt.InspectorException(
                            f"/rrd_updates answered {resp.status} {resp.reason}")
            except (XenAPIError, HostConnectionError) as e:
                raise virt.InspectorException(f"XAPI: {e}") from e
            step, legend, rows = parse_updates(body)
            for t, values in reversed(rows):
                for name, value in zip(legend, values, strict=False):
                    parts = name.split(":", 3)
                    if len(parts) == 4 and parts[1] == "vm":
                        self._series.setdefault((parts[2], parts[3]), _Series()).add(t, value, step)
                self._last_t = max(self._last_t, t)
            self._fetched = time.monotonic()

    def _vm(self, instance: Any) -> dict:
        self._refresh()
        name = util.instance_name(instance)
        rec = self._vms.get(name)
        if rec is None:
            raise virt.InstanceNotFoundException(f"no VM {name} runs on this host")
        return rec

    def _series_of(self, rec: dict, source: str) -> _Series:
        return self._series.get((rec["uuid"], source)) or _Series()

    # ------------------------------------------------------- the inspector
    def inspect_instance(self, instance: Any, duration: float | None = None) -> virt.InstanceStats:
        rec = self._vm(instance)
        vcpus = int(rec["VCPUs_at_startup"])
        cpus = [self._series_of(rec, f"cpu{n}") for n in range(vcpus)]
        memory = self._series_of(rec, "memory").last
        free_kib = self._series_of(rec, "memory_internal_free").last
        used = None if math.isnan(memory) or math.isnan(free_kib) \
            else (memory - free_kib * units.Ki) / units.Mi
        return virt.InstanceStats(
            power_state=rec["power_state"], cpu_number=vcpus,
            cpu_time=int(sum(c.total for c in cpus) * 1e9),  # busy seconds, in ns
            memory_actual=None if math.isnan(memory) else memory / units.Mi,
            memory_available=None if math.isnan(free_kib) else free_kib / units.Ki,
            memory_usage=used)

    def inspect_vnics(self, instance: Any, duration: float | None = None):
        rec = self._vm(instance)
        for vif in rec["VIFs"]:
            v = self._session.get_record("VIF", vif)
            if v is None:
                continue
            rx = self._series_of(rec, f"vif_{v['device']}_rx")
            tx = self._series_of(rec, f"vif_{v['device']}_tx")
            yield virt.InterfaceStats(
                name=f"vif{rec['domid']}.{v['device']}", mac=v["MAC"], fref=None,
                parameters={}, rx_bytes=int(rx.total), tx_bytes=int(tx.total),
                rx_packets=None, tx_packets=None, rx_drop=None, tx_drop=None,
                rx_errors=None, tx_errors=None, rx_bytes_delta=None, tx_bytes_delta=None)

    def inspect_disks(self, instance: Any, duration: float | None = None):
        rec = self._vm(instance)
        devices = sorted({k[1].split("_")[1] for k in self._series if k[0] == rec["uuid"]
                          and k[1].startswith("vbd_")})
        for dev in devices:
            yield virt.DiskStats(
                device=dev,
                read_bytes=int(self._series_of(rec, f"vbd_{dev}_read").total),
                read_requests=int(self._series_of(rec, f"vbd_{dev}_iops_read").total),
                write_bytes=int(self._series_of(rec, f"vbd_{dev}_write").total),
                write_requests=int(self._series_of(rec, f"vbd_{dev}_iops_write").total),
                errors=0, wr_total_times=None, rd_total_times=None)
