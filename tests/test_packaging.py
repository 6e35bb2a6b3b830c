"""The wheel lets Nova load the driver as ``compute_driver = xenapi.XenAPIDriver``, and old options work."""
from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

from oslo_config import cfg

from nova_xenapi import conf as xconf

ROOT = Path(__file__).resolve().parent.parent


def test_installed_wheel_is_loaded_by_nova_load_compute_driver(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("nova_xenapi-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nova/virt/xenapi/__init__.py" in names
    # the shim must not carry nova's own package files, which would clobber Nova's
    assert "nova/__init__.py" not in names and "nova/virt/__init__.py" not in names
    # lay Nova and our wheel into one site directory, as pip does on a compute host
    site = tmp_path / "site"
    nova_version = subprocess.run([sys.executable, "-c", "import nova.version as v; "
                                   "print(v.version_info.version_string())"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    f"nova=={nova_version}", str(wheel)], check=True, capture_output=True)
    probe = ("from nova.virt import driver, fake; import nova.virt.xenapi as m; "
             "d = driver.load_compute_driver(fake.FakeVirtAPI(), 'xenapi.XenAPIDriver'); "
             "print(type(d).__module__, m.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}).stdout
    module, shim = out.split()
    assert module == "nova_xenapi.driver"
    assert shim.startswith(str(site))


def test_legacy_default_names_still_work_with_a_warning(tmp_path, caplog):
    conf = cfg.ConfigOpts()
    xconf.register_opts(conf)
    ini = tmp_path / "nova.conf"
    ini.write_text("[DEFAULT]\nxenapi_connection_url = https://192.0.2.10\n"
                   "xenapi_connection_password = s3cret\nxenapi_connection_concurrent = 7\n")
    conf(["--config-file", str(ini)], project="nova")
    with caplog.at_level(logging.WARNING):
        assert conf.xenserver.connection_url == "https://192.0.2.10"
        assert conf.xenserver.connection_concurrent == 7
    assert "xenapi_connection_url" in caplog.text and "deprecated" in caplog.text
    assert conf.xenserver.connection_password == "s3cret"
    assert next(o for o in xconf.ALL_OPTS if o.name == "connection_password").secret


def test_tls_is_verified_unless_turned_off():
    conf = cfg.ConfigOpts()
    xconf.register_opts(conf)
    conf([], project="nova")
    assert conf.xenserver.verify_ssl is True
    assert conf.xenserver.image_handler == "direct_vhd"
