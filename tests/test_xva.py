"""XVA export and import over real sockets: round trips, xapi's format, hostile archives.

The format and rules follow xapi: ``ocaml/xapi/export.ml`` (objects and
export references, HTTP/1.0 answer, ``use_compression``), ``stream_vdi.ml``
(1 MiB ``Ref:<n>/<8 digits>`` chunks with ``.xxhash`` companions, zero chunks
left out but the first and the last, increasing chunk numbers on import) and
``import.ml`` (``200`` before the body, the outcome in the task, cleanup of
everything made when an import fails, ``IMPORT_ERROR_*`` codes).
Not confirmed against a real host: the exact text inside ``IMPORT_ERROR``
parameters (xapi prints OCaml exceptions there).
"""
from __future__ import annotations

import gzip
import http.client
import io
import os
import re
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client

import pytest
import XenAPI
import zstandard

from xapisim import HostConfig, SimConfig, Simulator

PW = "xva-pw"
MIB = 1 << 20


@pytest.fixture
def world(tmp_path):
    config = SimConfig(password=PW, hosts=[HostConfig("127.0.0.1", "xs-a", 16384, 8)],
                       other_pools=[[HostConfig("127.0.0.5", "xs-b", 16384, 8)]],
                       extra_srs=[("ext", 10)], auth_failure_delay=0.01)
    with Simulator(config, tmp_path / "state") as sim:
        yield sim


def login(sim, url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PW, "2.21", "xva-tests")
    return s


def wait(x, task):
    for _ in range(1000):
        if x.task.get_status(task) != "pending":
            break
        time.sleep(0.01)
    return x.task.get_record(task)


def refs_of(result: str) -> list[str]:
    wrapped = f"<methodResponse><params><param>{result}</param></params></methodResponse>"
    return xmlrpc.client.loads(wrapped)[0][0]


def put_raw(url, s, vdi, data):
    """Import ``data`` into ``vdi`` and wait for the import's task: xapi answers the PUT
    before it has read the body (so does xapisim), and only the task says it is written."""
    task = s.xenapi.task.create("import", "")
    req = urllib.request.Request(
        f"{url}/import_raw_vdi?session_id={s._session}&vdi={vdi}&task_id={task}",
        data=data, method="PUT")
    urllib.request.urlopen(req).read()
    for _ in range(1000):
        if s.xenapi.task.get_status(task) != "pending":
            break
        time.sleep(0.01)
    assert s.xenapi.task.get_status(task) == "success", s.xenapi.task.get_error_info(task)
    s.xenapi.task.destroy(task)


def get_raw(url, session, vdi) -> bytes:
    return urllib.request.urlopen(f"{url}/export_raw_vdi?session_id={session}&vdi={vdi}").read()


def make_vm(s, url, sr=None):
    """A halted VM with two disks (one with data and holes), an empty CD, two VIFs."""
    from nova_xenapi.testing.xapi_objects import diskless_vm
    x = s.xenapi
    sr = sr or x.pool.get_default_SR(x.pool.get_all()[0])
    vm = diskless_vm(x, "exported")
    x.VM.set_platform(vm, {"secureboot": "false", "viridian": "true"})
    x.VM.set_HVM_boot_params(vm, {"order": "dc", "firmware": "uefi"})
    x.VM.set_other_config(vm, {"owner": "tests"})
    data = {}
    for dev, size in (("0", 16 * MIB), ("1", 4 * MIB)):
        vdi = x.VDI.create({"name_label": f"disk{dev}", "name_description": "d", "SR": sr,
                            "virtual_size": str(size), "type": "user", "sharable": False,
                            "read_only": False, "other_config": {"k": dev}})
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": dev, "bootable": dev == "0",
                      "mode": "RW", "type": "Disk", "unpluggable": False, "empty": False,
                      "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
        content = os.urandom(MIB + 17) + bytes(5 * MIB) + os.urandom(3000) if dev == "0" \
            else bytes(size)
        put_raw(url, s, vdi, content)
        data[dev] = content.ljust(size, b"\0")
    x.VBD.create({"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "3", "bootable": False,
                  "mode": "RO", "type": "CD", "unpluggable": True, "empty": True,
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    nets = sorted(x.network.get_all_records().items(), key=lambda kv: kv[1]["bridge"])
    for dev, (net, _) in enumerate(nets[:2]):
        x.VIF.create({"device": str(dev), "network": net, "VM": vm, "MAC": f"02:aa:00:00:00:0{dev}",
                      "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                      "qos_algorithm_params": {}})
    return vm, data


def export(url, session, vm, query="") -> tuple[http.client.HTTPResponse, bytes]:
    r = urllib.request.urlopen(f"{url}/export?session_id={session}&uuid={vm}{query}")
    return r, r.read()


def import_xva(s, url, blob, query=""):
    x = s.xenapi
    task = x.task.create("import", "")
    req = urllib.request.Request(f"{url}/import?session_id={s._session}&task_id={task}{query}",
                                 data=blob, method="PUT")
    try:
        urllib.request.urlopen(req).read()
    except (urllib.error.URLError, ConnectionError):
        pass  # xapi may close the connection when it refuses the body
    rec = wait(x, task)
    x.task.destroy(task)
    return rec


def state(sim, s):
    """What a failed import must leave unchanged: objects, SR accounting and files."""
    x = s.xenapi
    srs = {r: (v["physical_utilisation"], v["virtual_allocation"], len(v["VDIs"]))
           for r, v in x.SR.get_all_records().items()}
    files = sorted(str(p.relative_to(sim.state_dir)) for p in (sim.state_dir / "srs").rglob("*"))
    return (len(x.VM.get_all()), len(x.VDI.get_all()), len(x.VBD.get_all()),
            len(x.VIF.get_all()), len(x.network.get_all()), len(x.VM_metrics.get_all()), srs, files)


def config_of(x, vm):
    rec = x.VM.get_record(vm)
    keep = ("name_label", "name_description", "memory_static_max", "memory_dynamic_min",
            "VCPUs_max", "VCPUs_at_startup", "platform", "HVM_boot_policy", "HVM_boot_params",
            "domain_type", "actions_after_crash", "PV_args", "user_version")
    out = {k: rec[k] for k in keep}
    out["other_config"] = {k: v for k, v in rec["other_config"].items()
                           if k not in ("mac_seed", "import_task")}
    vbds = []
    for vbd in rec["VBDs"]:
        v = x.VBD.get_record(vbd)
        vdi = {} if v["empty"] else x.VDI.get_record(v["VDI"])
        vbds.append((v["userdevice"], v["type"], v["mode"], v["bootable"], v["empty"],
                     vdi.get("name_label"), vdi.get("virtual_size"), vdi.get("other_config")))
    out["vbds"] = sorted(vbds)
    out["vifs"] = sorted((x.VIF.get_device(v), x.network.get_bridge(x.VIF.get_network(v)))
                         for v in rec["VIFs"])
    return out


def disks_of(s, url, vm):
    x = s.xenapi
    out = {}
    for vbd in x.VM.get_VBDs(vm):
        if not x.VBD.get_empty(vbd):
            out[x.VBD.get_userdevice(vbd)] = get_raw(url, s._session, x.VBD.get_VDI(vbd))
    return out


@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_round_trip_to_another_pool_keeps_configuration_and_bytes(world, compression):
    a = login(world, world.pool_url(0))
    b = login(world, world.pool_url(1))
    vm, data = make_vm(a, world.pool_url(0))
    query = f"&use_compression={compression}" if compression else ""
    resp, blob = export(world.pool_url(0), a._session, a.xenapi.VM.get_uuid(vm), query)
    assert resp.headers["Content-Disposition"] == 'attachment; filename="export.xva"'
    assert resp.headers["task-id"].startswith("OpaqueRef:")
    rec = import_xva(b, world.pool_url(1), blob)
    assert rec["status"] == "success", rec["error_info"]
    (new,) = refs_of(rec["result"])
    assert config_of(b.xenapi, new) == config_of(a.xenapi, vm)
    assert disks_of(b, world.pool_url(1), new) == data
    assert b.xenapi.VM.get_uuid(new) != a.xenapi.VM.get_uuid(vm)
    macs = {b.xenapi.VIF.get_MAC(v) for v in b.xenapi.VM.get_VIFs(new)}
    assert not macs & {"02:aa:00:00:00:00", "02:aa:00:00:00:01"}  # new MACs without restore
    assert b.xenapi.VM.get_current_operations(new) == {}
    assert b.xenapi.VM.get_power_state(new) == "Halted"


def test_export_is_xapis_tar_layout(world):
    a = login(world, world.pool_url(0))
    vm, _ = make_vm(a, world.pool_url(0))
    conn = http.client.HTTPConnection("127.0.0.1", world.port)
    conn.request("GET", f"/export?session_id={a._session}&ref={vm}")
    resp = conn.getresponse()
    assert resp.version == 10 and resp.status == 200  # HTTP/1.0, length-less (export.ml)
    assert resp.getheader("Content-Length") is None
    blob = resp.read()
    members = tarfile.open(fileobj=io.BytesIO(blob)).getmembers()
    assert members[0].name == "ova.xml"
    names = [m.name for m in members[1:]]
    assert all(re.fullmatch(r"Ref:\d+/\d{8}(\.xxhash)?", n) for n in names)
    tar = tarfile.open(fileobj=io.BytesIO(blob))
    for m in members[1:]:
        if m.name.endswith(".xxhash"):
            assert re.fullmatch(rb"[0-9A-F]{16}", tar.extractfile(m).read())
    # the 16 MiB disk: chunks 0, 1 (data), 6 (data), 15 (last); zero chunks are left out
    prefixes = sorted({n.split("/")[0] for n in names})
    chunks = {p: sorted(int(n.split("/")[1]) for n in names if n.startswith(p + "/")
                        and not n.endswith(".xxhash")) for p in prefixes}
    assert sorted(chunks.values()) == [[0, 1, 6, 15], [0, 3]]
    header = tar.extractfile("ova.xml").read()
    (value,), _ = xmlrpc.client.loads(b"<methodResponse><params><param>" + header +
                                      b"</param></params></methodResponse>")
    assert value["version"]["export_vsn"] in ("2", 2)
    classes = sorted({o["class"] for o in value["objects"]})
    assert classes == ["SR", "VBD", "VDI", "VIF", "VM", "VM_metrics", "network"]
    vm_obj = next(o for o in value["objects"] if o["class"] == "VM")
    assert all(r.startswith("Ref:") for r in vm_obj["snapshot"]["VBDs"])
    assert vm_obj["snapshot"]["consoles"] == [] and vm_obj["snapshot"]["power_state"] == "Halted"


def test_export_of_a_running_vm_is_refused_and_fails_its_task(world):
    a = login(world, world.pool_url(0))
    x = a.xenapi
    vm, _ = make_vm(a, world.pool_url(0))
    x.VM.start(vm, False, False)
    task = x.task.create("export", "")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{world.url}/export?session_id={a._session}&ref={vm}"
                               f"&task_id={task}")
    assert e.value.code == 500
    rec = wait(x, task)
    assert rec["status"] == "failure" and rec["error_info"][0] == "VM_BAD_POWER_STATE"
    assert x.VM.get_current_operations(vm) == {}


def _rewrite(blob: bytes, change) -> bytes:
    """Re-pack an XVA after ``change(name, data) -> (name, data) | None``."""
    src = tarfile.open(fileobj=io.BytesIO(blob))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            got = change(m.name, src.extractfile(m).read())
            if got is None:
                continue
            info = tarfile.TarInfo(got[0])
            info.size = len(got[1])
            dst.addfile(info, io.BytesIO(got[1]))
    return out.getvalue()


def _flip_data(name, data):
    if re.fullmatch(r"Ref:\d+/00000001", name):
        data = bytes([data[0] ^ 1]) + data[1:]
    return name, data


def _dotdot(name, data):
    return name.replace("/", "/../../", 1) if name.startswith("Ref:") else name, data


def _claim_2tib(name, data):
    if name == "ova.xml":
        data = re.sub(rb"(<name>virtual_size</name><value>)\d+", rb"\g<1>2199023255552", data)
    return name, data


def _bad_xml(name, data):
    return (name, data[: len(data) // 2]) if name == "ova.xml" else (name, data)


def _not_ova_first(name, data):
    return ("other.xml", data) if name == "ova.xml" else (name, data)


@pytest.mark.parametrize("name,damage,code", [
    ("truncated", lambda b: b[: len(b) // 2], "IMPORT_ERROR_PREMATURE_EOF"),
    ("bad checksum", lambda b: _rewrite(b, _flip_data), "IMPORT_ERROR"),
    ("dotdot path", lambda b: _rewrite(b, _dotdot), "IMPORT_ERROR"),
    ("2 TiB sparse disk", lambda b: _rewrite(b, _claim_2tib), "SR_FULL"),
    ("malformed ova.xml", lambda b: _rewrite(b, _bad_xml), "IMPORT_ERROR"),
    # xapi retries a stream whose first member is not ova.xml through gzip, whose output
    # then ends at once; only inside a compressed stream is it UNEXPECTED_FILE
    ("ova.xml not first", lambda b: _rewrite(b, _not_ova_first), "IMPORT_ERROR_PREMATURE_EOF"),
    ("ova.xml not first, gzip", lambda b: gzip.compress(_rewrite(b, _not_ova_first)),
     "IMPORT_ERROR_UNEXPECTED_FILE"),
    ("not an archive", lambda b: os.urandom(4096), "IMPORT_ERROR_PREMATURE_EOF"),
    ("bad checksum, zstd", lambda b: zstandard.ZstdCompressor().compress(_rewrite(b, _flip_data)),
     "IMPORT_ERROR"),
])
def test_hostile_xva_is_refused_and_leaves_nothing(world, name, damage, code):
    a = login(world, world.pool_url(0))
    b = login(world, world.pool_url(1))
    vm, _ = make_vm(a, world.pool_url(0))
    _, blob = export(world.pool_url(0), a._session, a.xenapi.VM.get_uuid(vm))
    x = b.xenapi
    small = [r for r, v in x.SR.get_all_records().items() if v["name_label"] == "EXT storage 1"][0]
    before = state(world, b)
    rec = import_xva(b, world.pool_url(1), damage(blob), f"&sr_id={small}")
    assert rec["status"] == "failure", name
    assert rec["error_info"][0] == code, rec["error_info"]
    assert state(world, b) == before


def test_import_into_an_iso_sr_is_refused(world):
    b = login(world, world.pool_url(1))
    x = b.xenapi
    iso = [r for r, v in x.SR.get_all_records().items() if v["content_type"] == "iso"][0]
    task = x.task.create("import", "")
    req = urllib.request.Request(f"{world.pool_url(1)}/import?session_id={b._session}"
                                 f"&task_id={task}&sr_id={iso}", data=b"x" * 1024, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400
    assert wait(x, task)["error_info"] == ["SR_OPERATION_NOT_SUPPORTED", iso]


def test_metadata_export_and_restore_keep_uuids_and_find_disks_by_location(world):
    a = login(world, world.pool_url(0))
    x = a.xenapi
    vm, data = make_vm(a, world.pool_url(0))
    uuid = x.VM.get_uuid(vm)
    r = urllib.request.urlopen(f"{world.url}/export_metadata?session_id={a._session}&uuid={uuid}")
    blob = r.read()
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(blob))] == ["ova.xml"]
    vdis = {x.VBD.get_userdevice(v): x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)
            if not x.VBD.get_empty(v)}
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    for vif in x.VM.get_VIFs(vm):
        x.VIF.destroy(vif)
    x.VM.destroy(vm)
    task = x.task.create("restore", "")
    req = urllib.request.Request(f"{world.url}/import_metadata?session_id={a._session}"
                                 f"&task_id={task}&restore=true", data=blob, method="PUT")
    urllib.request.urlopen(req).read()
    rec = wait(x, task)
    assert rec["status"] == "success", rec["error_info"]
    (new,) = refs_of(rec["result"])
    assert x.VM.get_uuid(new) == uuid
    got = {x.VBD.get_userdevice(v): x.VBD.get_VDI(v) for v in x.VM.get_VBDs(new)
           if not x.VBD.get_empty(v)}
    assert got == vdis
    assert disks_of(a, world.url, new) == data


def test_metadata_import_of_a_missing_disk_fails_clean(world):
    a = login(world, world.pool_url(0))
    x = a.xenapi
    vm, _ = make_vm(a, world.pool_url(0))
    blob = urllib.request.urlopen(f"{world.url}/export_metadata?session_id={a._session}"
                                  f"&ref={vm}").read()
    for vbd in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(vbd)
        x.VBD.destroy(vbd)
        if vdi != "OpaqueRef:NULL":
            x.VDI.destroy(vdi)
    before = state(world, a)
    task = x.task.create("restore", "")
    urllib.request.urlopen(urllib.request.Request(
        f"{world.url}/import_metadata?session_id={a._session}&task_id={task}",
        data=blob, method="PUT")).read()
    rec = wait(x, task)
    assert rec["error_info"][0] == "VDI_LOCATION_MISSING"
    assert state(world, a) == before


def test_import_over_jsonrpc_session_and_task(world):
    """The same handlers with a session and task made over JSON-RPC (SDKs other than Python's)."""
    import json
    a = login(world, world.pool_url(0))
    vm, data = make_vm(a, world.pool_url(0))
    _, blob = export(world.pool_url(0), a._session, a.xenapi.VM.get_uuid(vm))

    def rpc(method, *params):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(world.pool_url(1) + "/jsonrpc", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())["result"]
    session = rpc("session.login_with_password", "root", PW, "2.21", "json")
    task = rpc("task.create", session, "import", "")
    req = urllib.request.Request(f"{world.pool_url(1)}/import?task_id={task}", data=blob,
                                 method="PUT", headers={"Cookie": f"session_id={session}"})
    urllib.request.urlopen(req).read()
    for _ in range(500):
        if rpc("task.get_status", session, task) != "pending":
            break
        time.sleep(0.01)
    assert rpc("task.get_status", session, task) == "success"
    (new,) = refs_of(rpc("task.get_result", session, task))
    b = login(world, world.pool_url(1))
    assert disks_of(b, world.pool_url(1), new) == data


def _hand_made_xva(disk: bytes) -> bytes:
    """An XVA as an older exporter writes it: SHA-1 ``.checksum`` members, a sparse disk
    with gaps in the chunk numbers, version ints as strings, a sparse ova.xml."""
    import hashlib
    ova = f"""<value><struct>
<member><name>version</name><value><struct>
 <member><name>hostname</name><value>old-host</value></member>
 <member><name>date</name><value>2019-01-01</value></member>
 <member><name>product_version</name><value>7.1.0</value></member>
 <member><name>product_brand</name><value>XenServer</value></member>
 <member><name>build_number</name><value>137272c</value></member>
 <member><name>xapi_major</name><value>1</value></member>
 <member><name>xapi_minor</name><value>1</value></member>
 <member><name>export_vsn</name><value>2</value></member>
</struct></value></member>
<member><name>objects</name><value><array><data>
 <value><struct><member><name>class</name><value>VM</value></member>
  <member><name>id</name><value>Ref:0</value></member>
  <member><name>snapshot</name><value><struct>
   <member><name>uuid</name><value>0b2cf6e4-9d0e-4e6e-8a41-3bdf36f0c5a1</value></member>
   <member><name>name_label</name><value>from 7.1</value></member>
   <member><name>memory_static_max</name><value>268435456</value></member>
   <member><name>memory_dynamic_max</name><value>268435456</value></member>
   <member><name>memory_dynamic_min</name><value>268435456</value></member>
   <member><name>memory_static_min</name><value>268435456</value></member>
   <member><name>VCPUs_max</name><value>1</value></member>
   <member><name>VCPUs_at_startup</name><value>1</value></member>
   <member><name>HVM_boot_policy</name><value>BIOS order</value></member>
   <member><name>VBDs</name><value><array><data><value>Ref:1</value></data></array></value></member>
   <member><name>power_state</name><value>Halted</value></member>
  </struct></value></member></struct></value>
 <value><struct><member><name>class</name><value>VBD</value></member>
  <member><name>id</name><value>Ref:1</value></member>
  <member><name>snapshot</name><value><struct>
   <member><name>VM</name><value>Ref:0</value></member>
   <member><name>VDI</name><value>Ref:2</value></member>
   <member><name>userdevice</name><value>0</value></member>
   <member><name>bootable</name><value><boolean>1</boolean></value></member>
   <member><name>mode</name><value>RW</value></member>
   <member><name>type</name><value>Disk</value></member>
  </struct></value></member></struct></value>
 <value><struct><member><name>class</name><value>VDI</value></member>
  <member><name>id</name><value>Ref:2</value></member>
  <member><name>snapshot</name><value><struct>
   <member><name>name_label</name><value>old disk</value></member>
   <member><name>SR</name><value>Ref:3</value></member>
   <member><name>virtual_size</name><value>{len(disk)}</value></member>
   <member><name>type</name><value>system</value></member>
  </struct></value></member></struct></value>
 <value><struct><member><name>class</name><value>SR</value></member>
  <member><name>id</name><value>Ref:3</value></member>
  <member><name>snapshot</name><value><struct>
   <member><name>content_type</name><value>user</value></member>
  </struct></value></member></struct></value>
</data></array></value></member>
</struct></value>""".encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("ova.xml", ova)
        last = (len(disk) - 1) // MIB
        for n in range(last + 1):
            piece = disk[n * MIB:(n + 1) * MIB]
            if n in (0, last) or piece.strip(b"\0"):
                add(f"Ref:2/{n:08d}", piece)
                add(f"Ref:2/{n:08d}.checksum", hashlib.sha1(piece).hexdigest().encode())
    return out.getvalue()


def test_import_of_an_older_exporters_xva(world):
    b = login(world, world.pool_url(1))
    disk = os.urandom(MIB) + bytes(3 * MIB) + b"tail".ljust(MIB, b"\1") + bytes(3 * MIB)
    rec = import_xva(b, world.pool_url(1), _hand_made_xva(disk))
    assert rec["status"] == "success", rec["error_info"]
    (vm,) = refs_of(rec["result"])
    x = b.xenapi
    assert x.VM.get_name_label(vm) == "from 7.1"
    assert x.VM.get_uuid(vm) != "0b2cf6e4-9d0e-4e6e-8a41-3bdf36f0c5a1"  # no restore: a new uuid
    assert disks_of(b, world.pool_url(1), vm) == {"0": disk}
    assert x.VDI.get_name_label(x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])) == "old disk"
    assert x.VM.get_domain_type(vm) == "hvm"  # derived from HVM_boot_policy, as import.ml does


@pytest.fixture
def xva_server(tmp_path):
    """A plain HTTP server on loopback serving files from tmp_path, with /redirect/<n>."""
    import functools
    import http.server
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/redirect/"):
                n = int(self.path.split("/")[2])
                self.send_response(302)
                self.send_header("Location", f"/redirect/{n - 1}" if n > 1 else "/vm.xva")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_vm_import_from_a_url_over_both_protocols(world, xva_server):
    """VM.import (xapi_vm.ml import_inner): GET the URL, follow redirects, import the stream."""
    import json
    directory, base = xva_server
    a = login(world, world.pool_url(0))
    vm, data = make_vm(a, world.pool_url(0))
    _, blob = export(world.pool_url(0), a._session, a.xenapi.VM.get_uuid(vm))
    (directory / "vm.xva").write_bytes(blob)
    b = login(world, world.pool_url(1))
    x = b.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    (new,) = getattr(x.VM, "import")(f"{base}/redirect/3", sr, False, False)
    assert disks_of(b, world.pool_url(1), new) == data
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "VM.import",
                       "params": [b._session, f"{base}/vm.xva", sr, False, False]}).encode()
    req = urllib.request.Request(world.pool_url(1) + "/jsonrpc", data=body,
                                 headers={"Content-Type": "application/json"})
    (again,) = json.loads(urllib.request.urlopen(req).read())["result"]
    assert again != new and disks_of(b, world.pool_url(1), again) == data


def test_vm_import_errors_leave_nothing(world, xva_server):
    directory, base = xva_server
    b = login(world, world.pool_url(1))
    x = b.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    (directory / "junk.xva").write_bytes(os.urandom(10000))
    before = state(world, b)
    vm_import = getattr(x.VM, "import")
    for url, code in ((f"{base}/missing.xva", "IMPORT_ERROR"),
                      (f"{base}/redirect/9", "IMPORT_ERROR"),
                      (f"{base}/junk.xva", "IMPORT_ERROR_PREMATURE_EOF")):
        with pytest.raises(XenAPI.Failure) as e:
            vm_import(url, sr, False, False)
        assert e.value.details[0] == code, (url, e.value.details)
    assert state(world, b) == before
