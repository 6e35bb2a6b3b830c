"""Every dom0 plugin function, fuzzed with hostile arguments (hypothesis).

The plugins run in this process, with the dom0 they see (``XAPISIM_DOM0_ROOT``)
a temporary directory holding what a dom0 has: ``/images``, ``/boot/guest``,
an SR mount, a disk in ``/dev``, and files that no plugin may touch
(``/etc/passwd``, ``/root``). A sibling directory stands for the rest of the
machine. For any arguments (paths with ``..`` or absolute ones, shell
metacharacters, option-looking values, huge or negative numbers, malformed
UUIDs, arbitrary text), a function either answers or refuses with a
``XenAPIPlugin.Failure``, never another exception, and nothing outside the
roots it may write (``/images``, ``/boot/guest``, the SR mount) changes.

Values that would reach the network are hostile only (a closed loopback
port at most), so no example leaves this machine.
"""
from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nova_xenapi.dom0 import PLUGIN_DIR
from xapisim.inventory import DOM0_LIB

SR_UUID = "5c1b7a52-94c3-4f0a-9a7e-0c4a6a2b9d11"
WRITABLE = ("images", "boot/guest", f"var/run/sr-mount/{SR_UUID}", "tmp")
HOSTILE = ["../../etc/passwd", "/etc/passwd", "..", ".", "", " ", "a/../../..", "$(id)", "`id`",
           "; rm -rf /", "| cat /etc/shadow", "-oProxyCommand=touch /tmp/pwned", "--help",
           "\x00", "a\nb", "\r\nX-Injected: 1", "%2e%2e%2f", "-1", "0", "99999999999999999999",
           "1e9", "0x10", " 7", "ffffffff-ffff-ffff-ffff-fffffffffffff", "xvda; reboot",
           "../xvdb", "sda1", "a" * 5000, str(uuid.uuid4()).upper(), "file:///etc/passwd",
           "http://127.0.0.1:1/", "http://[::1", "https://", "http://h/?q=1"]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=64),
                    st.integers(-2 ** 70, 2 ** 70).map(str))
uuids = st.one_of(hostile, st.uuids().map(str), st.just(SR_UUID),
                  st.lists(st.uuids().map(str), min_size=1, max_size=40).map(",".join),
                  st.lists(hostile, min_size=1, max_size=3).map(",".join))
numbers = st.one_of(hostile, st.integers(-5, 70).map(str), st.sampled_from(["1", "65535", "65536"]))
no_timeout = hostile.filter(lambda v: not (v.isascii() and v.isdigit() and 1 <= int(v) <= 3600))
names = st.one_of(hostile, st.sampled_from(["kernel", "ramdisk", "xvdb", "xvdzz", "sdb", "volume-1",
                                             "../../../outside/precious", "../../root/secret"]))

#: plugin -> function -> {argument: values}; the arguments each function reads
FUNCTIONS: dict[str, dict[str, dict[str, st.SearchStrategy]]] = {
    "console": {"get_console_log": {"dom_id": numbers}},
    "kernel": {
        "copy_vdi": {"dev": names, "filename": names, "max_size": numbers, "length": numbers},
        "remove_kernel_ramdisk": {"kernel-file": st.one_of(hostile, names.map("/boot/guest/".__add__)),
                                  "ramdisk-file": st.one_of(hostile,
                                                            names.map("/boot/guest/".__add__))},
    },
    "migration": {
        "stage_vhds": {"instance_uuid": uuids, "disk": names, "sr_uuid": uuids,
                       "vdi_uuids": uuids},
        "receive_vhds": {"instance_uuid": uuids, "disk": names, "sr_uuid": uuids,
                         "source_host": st.one_of(hostile, st.just("127.0.0.1")),
                         "source_port": numbers, "count": numbers, "uuids": uuids},
        "remove_staged": {"instance_uuid": uuids},
    },
    "glance_vhd": {
        "download_vhd": {"endpoint": hostile, "image_id": uuids, "sr_uuid": uuids,
                         "uuids": uuids, "token": hostile, "max_virtual_size": numbers},
        "upload_vhd": {"endpoint": hostile, "image_id": uuids, "sr_uuid": uuids,
                       "vdi_uuids": uuids, "token": hostile, "compression_level": numbers},
    },
    "nfs_volume": {
        "link_volume": {"sr_uuid": uuids, "name": names, "vdi_uuid": uuids},
        "unlink_volume": {"sr_uuid": uuids, "vdi_uuid": uuids},
    },
    "netwrap": {"run_command": {"cmd": st.one_of(hostile, st.lists(hostile, max_size=4).map(
        lambda a: __import__("json").dumps(["sh", "-c", *a]))), "cmd_input": hostile}},
    "partition": {"grow_root": {"dev": names}},
    "xenhost": {"host_uptime": {}, "trigger_nmi": {"dom_id": numbers}},
    # a request that passes every check waits for the guest: "timeout" is never a valid one
    "agent": {
        "version": {"id": uuids, "dom_id": numbers, "timeout": no_timeout},
        "key_init": {"id": uuids, "dom_id": numbers, "timeout": no_timeout, "pub": numbers},
        "password": {"id": uuids, "dom_id": numbers, "timeout": no_timeout, "enc_pass": hostile},
        "inject_file": {"id": uuids, "dom_id": numbers, "timeout": no_timeout,
                        "b64_path": hostile, "b64_contents": hostile},
        "resetnetwork": {"id": uuids, "dom_id": numbers, "timeout": no_timeout},
        "agent_update": {"id": uuids, "dom_id": numbers, "timeout": no_timeout, "url": hostile,
                         "md5sum": hostile},
    },
}
CASES = [(p, f) for p, fns in FUNCTIONS.items() for f in fns]


def arguments(spec: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Any subset of the function's arguments, each with any value, plus a stray one."""
    return st.fixed_dictionaries({}, optional={**spec, "stray": hostile})


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """A dom0 directory and, beside it, the rest of the machine."""
    top = tmp_path_factory.mktemp("fuzz")
    root = top / "dom0"
    for d in (*WRITABLE, "etc", "root", "dev", "var/log"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    (root / "root/secret").write_text("keep me")
    (root / "dev/xvdb").write_bytes(b"\x5a" * 4096)
    (root / f"var/run/sr-mount/{SR_UUID}/volume-1").write_bytes(b"\x00" * 512)
    (top / "outside").mkdir()
    (top / "outside/precious").write_text("keep me too")
    return top


def tree(top: Path) -> dict[str, tuple[int, int]]:
    """Every path outside the writable roots, with its size and mtime."""
    out = {}
    writable = [top / "dom0" / w for w in WRITABLE]
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in writable]
        for name in (*dirnames, *filenames):
            st_ = os.lstat(here / name)
            out[str(here / name)] = (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def plugins(machine):
    saved_path, saved_env = list(sys.path), os.environ.get("XAPISIM_DOM0_ROOT")
    sys.path[:0] = [str(PLUGIN_DIR), str(DOM0_LIB)]
    os.environ["XAPISIM_DOM0_ROOT"] = str(machine / "dom0")
    try:
        yield {name: importlib.import_module(name) for name in FUNCTIONS}, \
            importlib.import_module("XenAPIPlugin")
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("XAPISIM_DOM0_ROOT", None)
        else:
            os.environ["XAPISIM_DOM0_ROOT"] = saved_env


@pytest.mark.parametrize("plugin,function", CASES, ids=[f"{p}.{f}" for p, f in CASES])
def test_hostile_arguments_are_refused_and_touch_nothing(plugins, machine, plugin, function):
    modules, xenapi_plugin = plugins
    fn = getattr(modules[plugin], function)
    before = tree(machine)

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(arguments(FUNCTIONS[plugin][function]))
    def check(args: dict[str, str]) -> None:
        try:
            fn(None, args)
        except xenapi_plugin.Failure:
            pass  # a refusal, with its code and parameters
        assert tree(machine) == before, f"{plugin}.{function}({args!r}) touched the machine"

    check()
