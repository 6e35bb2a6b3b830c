"""What xcp-rrdd records for a host and its VMs, and xapi's ``/rrd_updates`` export of it.

``GET /rrd_updates?session_id=...&start=<epoch>`` (with ``cf``, ``interval``,
``host=true``, ``vm_uuid``, ``json=true`` as xapi takes them) answers the
``xport`` document of xapi-rrd's ``rrd_updates.ml``: ``meta`` (start, step,
end, rows, columns, a legend of ``<cf>:<vm|host>:<uuid>:<data source>``)
and ``data`` rows, newest first, one value per legend entry. Steps are
xcp-rrdd's archives: 5 s for the last 10 minutes, 60 s for 2 hours, 1 hour
for a week, 1 day for a year; the archive is the finest whose step is at
least ``interval`` and that still holds ``start``.

Values follow the data sources xcp-rrdd's plugins publish, under their
names: for a VM ``cpu<N>`` (the vCPU's busy fraction), ``memory`` (bytes),
``memory_target``, ``memory_internal_free`` (KiB, what the guest reports),
``vif_<N>_rx``/``_tx`` (bytes/s) and ``vbd_<dev>_read``/``_write``
(bytes/s) with ``_iops_read``/``_iops_write``; for a host ``cpu<N>``,
``cpu_avg``, ``memory_total_kib``, ``memory_free_kib`` and ``loadavg``.
They are rates of what the simulated VM does: it is busy while it runs (a
paused VM is idle), its devices carry traffic only while plugged, and the
rates vary from step to step as a seeded function of the VM and the time,
so two reads of one step agree. A VM that was not running at a step has no
value there (``NaN``), as xcp-rrdd has none.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import time
from xml.sax.saxutils import escape

#: xcp-rrdd's archives: (step in seconds, rows kept)
ARCHIVES = ((5, 120), (60, 120), (3600, 168), (86400, 366))


def _wave(seed: str, t: int, low: float, high: float) -> float:
    """A value in [low, high] for ``seed`` at step time ``t``: the same on every read."""
    h = hashlib.blake2b(f"{seed}:{t}".encode(), digest_size=8).digest()
    return low + (high - low) * (int.from_bytes(h, "big") / 2 ** 64)


def _epoch(stamp) -> float:
    """Seconds since the epoch of a XAPI datetime (``YYYYMMDDTHH:MM:SSZ``); 0 if unset."""
    try:
        return calendar.timegm(time.strptime(str(stamp), "%Y%m%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return 0.0


def choose_archive(start: int, now: int, interval: int) -> tuple[int, int]:
    for step, rows in ARCHIVES:
        if step >= interval and now - start <= step * rows:
            return step, rows
    return ARCHIVES[-1]


def _vm_sources(store, vm: str) -> list[tuple[str, callable]]:
    """(data source name, value at time t) for a VM, from its record now."""
    rec = store.get("VM", vm)
    uuid = rec["uuid"]
    vcpus = int(rec["VCPUs_at_startup"])
    mem = int(rec["memory_dynamic_max"])
    metrics = store.tables["VM_metrics"].get(rec["metrics"], {})
    started_at = _epoch(metrics.get("start_time"))
    paused = rec["power_state"] == "Paused"

    def up(t: int) -> bool:
        return rec["power_state"] in ("Running", "Paused") and t >= started_at

    sources: list[tuple[str, callable]] = []
    for n in range(vcpus):
        sources.append((f"cpu{n}", lambda t, n=n: (0.0 if paused else _wave(f"{uuid}:cpu{n}", t,
                                                                           0.02, 0.6))
                        if up(t) else math.nan))
    sources.append(("memory", lambda t: float(mem) if up(t) else math.nan))
    sources.append(("memory_target", lambda t: float(mem) if up(t) else math.nan))
    sources.append(("memory_internal_free",
                    lambda t: mem / 1024 * _wave(f"{uuid}:free", t, 0.3, 0.7) if up(t) else math.nan))
    for vif in rec["VIFs"]:
        v = store.tables["VIF"].get(vif)
        if v is None:
            continue
        for way, (low, high) in (("rx", (2e3, 2e5)), ("tx", (1e3, 1e5))):
            sources.append((f"vif_{v['device']}_{way}",
                            lambda t, d=v["device"], way=way, low=low, high=high, ref=vif:
                            _wave(f"{uuid}:vif{d}{way}", t, low, high)
                            if up(t) and store.tables["VIF"].get(ref, {}).get("currently_attached")
                            and not paused else (0.0 if up(t) else math.nan)))
    for vbd in rec["VBDs"]:
        b = store.tables["VBD"].get(vbd)
        if b is None or b["empty"] or not b["device"]:
            continue
        dev = b["device"]
        for kind, (low, high) in (("read", (4e3, 4e6)), ("write", (4e3, 2e6)),
                                  ("iops_read", (1, 400)), ("iops_write", (1, 200))):
            sources.append((f"vbd_{dev}_{kind}",
                            lambda t, dev=dev, kind=kind, low=low, high=high, ref=vbd:
                            _wave(f"{uuid}:{dev}{kind}", t, low, high)
                            if up(t) and store.tables["VBD"].get(ref, {}).get("currently_attached")
                            and not paused else (0.0 if up(t) else math.nan)))
    return sources


def _host_sources(store, host: str) -> list[tuple[str, callable]]:
    rec = store.get("host", host)
    uuid = rec["uuid"]
    cpus = len(rec["host_CPUs"])
    metrics = store.tables["host_metrics"].get(rec["metrics"], {})
    total = int(metrics.get("memory_total", 0))
    free = int(metrics.get("memory_free", 0))
    sources = [(f"cpu{n}", lambda t, n=n: _wave(f"{uuid}:cpu{n}", t, 0.01, 0.3))
               for n in range(cpus)]
    sources.append(("cpu_avg", lambda t: sum(f(t) for _, f in sources[:cpus]) / max(1, cpus)))
    sources.append(("memory_total_kib", lambda t: total / 1024))
    sources.append(("memory_free_kib", lambda t: free / 1024))
    sources.append(("loadavg", lambda t: _wave(f"{uuid}:load", t, 0.0, 2.0)))
    return sources


def updates(backend, host_ref: str, start: int, interval: int = 0, cf: str = "AVERAGE",
            with_host: bool = False, vm_uuid: str | None = None,
            now: int | None = None) -> dict:
    """The export: VMs resident on ``host_ref`` (or the one ``vm_uuid``), and the host."""
    store = backend.store
    now = int(now if now is not None else time.time())
    step, rows = choose_archive(start, now, interval)
    end = now - now % step
    columns: list[tuple[str, callable]] = []
    with store.lock:
        for ref, rec in store.tables["VM"].items():
            if rec["is_control_domain"] or rec["is_a_template"]:
                continue
            if vm_uuid is not None and rec["uuid"] != vm_uuid:
                continue
            if vm_uuid is None and rec["resident_on"] != host_ref:
                continue
            columns += [(f"{cf}:vm:{rec['uuid']}:{name}", fn) for name, fn in _vm_sources(store, ref)]
        if with_host:
            uuid = store.get("host", host_ref)["uuid"]
            columns += [(f"{cf}:host:{uuid}:{name}", fn)
                        for name, fn in _host_sources(store, host_ref)]
    times = []
    t = end
    while t > start and len(times) < rows:
        times.append(t)
        t -= step
    data = [(t, [fn(t) for _, fn in columns]) for t in times]
    return {"start": times[-1] - step if times else end, "step": step, "end": end,
            "legend": [name for name, _ in columns], "data": data}


def _value(v: float) -> str:
    """xapi-rrd's ``Utils.f_to_s``: ``%0.15g``, ``NaN``, ``0.0``."""
    if math.isnan(v):
        return "NaN"
    if v == 0:
        return "0.0"
    return f"{v:.15g}"


def to_xml(u: dict) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?><xport><meta>',
             f"<start>{u['start']}</start><step>{u['step']}</step><end>{u['end']}</end>",
             f"<rows>{len(u['data'])}</rows><columns>{len(u['legend'])}</columns><legend>"]
    parts += [f"<entry>{escape(name)}</entry>" for name in u["legend"]]
    parts.append("</legend></meta><data>")
    for t, values in u["data"]:
        parts.append(f"<row><t>{t}</t>" + "".join(f"<v>{_value(v)}</v>" for v in values)
                     + "</row>")
    parts.append("</data></xport>")
    return "".join(parts).encode()


def to_json(u: dict) -> bytes:
    return json.dumps({"meta": {"start": u["start"], "step": u["step"], "end": u["end"],
                                "rows": len(u["data"]), "columns": len(u["legend"]),
                                "legend": u["legend"]},
                       "data": [{"t": t, "values": [None if math.isnan(v) else v for v in vs]}
                                for t, vs in u["data"]]}).encode()


#: xcp-rrdd's data source types and bounds: rates of counters are DERIVE, the rest GAUGE
def _ds_meta(name: str) -> tuple[str, str, str]:
    if name.startswith(("vif_", "vbd_")):
        return "DERIVE", "0.0", "Infinity"
    if name.startswith("cpu"):
        return "GAUGE", "0.0", "1.0"
    return "GAUGE", "0.0", "Infinity"


def dump(backend, host_ref: str, vm_uuid: str | None = None, now: int | None = None) -> bytes:
    """``/vm_rrd?uuid=`` (one VM's RRD) or ``/host_rrd`` (this host's): xapi-rrd's
    ``xml_to_output``, with xcp-rrdd's four AVERAGE archives, rows oldest first."""
    store = backend.store
    now = int(now if now is not None else time.time())
    with store.lock:
        if vm_uuid is not None:
            found = [r for r, rec in store.tables["VM"].items() if rec["uuid"] == vm_uuid]
            if not found:
                return b""
            sources = _vm_sources(store, found[0])
        else:
            sources = _host_sources(store, host_ref)
    base = ARCHIVES[0][0]
    last = now - now % base
    parts = ['<?xml version="1.0" encoding="UTF-8"?><rrd><version>0003</version>',
             f"<step>{base}</step><lastupdate>{now}</lastupdate>"]
    for name, fn in sources:
        kind, low, high = _ds_meta(name)
        v = fn(last)
        parts.append(f"<ds><name>{escape(name)}</name><type>{kind}</type>"
                     f"<minimal_heartbeat>300.0</minimal_heartbeat><min>{low}</min>"
                     f"<max>{high}</max><last_ds>{_value(v)}</last_ds><value>0.0</value>"
                     "<unknown_sec>0</unknown_sec></ds>")
    for step, rows in ARCHIVES:
        end = now - now % step
        parts.append(f"<rra><cf>AVERAGE</cf><pdp_per_row>{step // base}</pdp_per_row>"
                     "<params><xff>0.5</xff></params><cdp_prep>")
        parts += ["<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
                  "<value>0.0</value><unknown_datapoints>0</unknown_datapoints></ds>"] * len(sources)
        parts.append("</cdp_prep><database>")
        for i in range(rows - 1, -1, -1):
            t = end - i * step
            parts.append("<row>" + "".join(f"<v>{_value(fn(t))}</v>" for _, fn in sources)
                         + "</row>")
        parts.append("</database></rra>")
    parts.append("</rrd>")
    return "".join(parts).encode()
