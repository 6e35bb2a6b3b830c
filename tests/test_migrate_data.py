"""The live migration data crosses nova-conductor, which never imports our driver.

nova-conductor deserializes what ``check_can_live_migrate_destination``
returns with only Nova's own object registry; this builds the driver's
migrate data, serializes it as RPC does, and reads it back in a fresh Python
process that has not imported ``nova_xenapi``.
"""
from __future__ import annotations

import json
import subprocess
import sys

from nova import objects

from nova_xenapi import live_migration

objects.register_all()

READER = r"""
import json, sys
from nova import objects
objects.register_all()
from nova.objects import base
prim = json.loads(sys.stdin.read())
data = base.NovaObject.obj_from_primitive(prim)
assert not any(m.startswith("nova_xenapi") for m in sys.modules), "conductor imported the driver"
print(json.dumps({"cls": type(data).__name__, "block": data.block_migration,
                  "host": data.target_connect_addr, "sr": data.filename,
                  "extra": data.instance_relative_path, "mark": data.image_type,
                  "shared": [data.is_shared_instance_path, data.is_shared_block_storage]}))
"""


def _data(block: bool):
    from nova.objects import migrate_data
    data = migrate_data.LibvirtLiveMigrateData()
    data.block_migration = block
    data.is_shared_instance_path = True
    data.is_shared_block_storage = True
    data.image_type = live_migration.MARK
    data.target_connect_addr = "6c2b5a1e-0000-4000-8000-000000000001"
    data.filename = "sr-uuid" if block else ""
    data.instance_relative_path = json.dumps({"dest": {"host": "OpaqueRef:h"}, "sr": "OpaqueRef:s",
                                              "network": "OpaqueRef:n", "pool": "p"}) if block else ""
    data.serial_listen_addr = None
    return data


def test_a_conductor_without_the_driver_reads_the_migrate_data_back():
    for block in (False, True):
        prim = _data(block).obj_to_primitive()
        out = subprocess.run([sys.executable, "-c", READER], input=json.dumps(prim),
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["cls"] == "LibvirtLiveMigrateData" and got["mark"] == "xapi"
        assert got["block"] is block and got["shared"] == [True, True]
        assert got["host"] == "6c2b5a1e-0000-4000-8000-000000000001"
        if block:
            assert json.loads(got["extra"])["sr"] == "OpaqueRef:s"


def test_the_source_refuses_migrate_data_that_is_not_ours():
    import pytest
    from nova import exception
    data = _data(False)
    data.image_type = "raw"
    with pytest.raises(exception.MigrationPreCheckError, match="not a XenAPI host"):
        live_migration.check_source(None, None, data, None)
