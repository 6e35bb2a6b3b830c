"""SR.scan introduces VHD files found in a file SR and forgets VDIs whose files are gone."""
from __future__ import annotations

import subprocess
import uuid as uuidlib

MIB = 1 << 20


def test_scan_introduces_and_forgets_vhd_files(sim, client):
    sr = client("pool.get_default_SR", client("pool.get_all")[0])
    sr_dir = sim.backend.disks.sr_dir(client("SR.get_uuid", sr))
    new = str(uuidlib.uuid4())
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
                    str(sr_dir / f"{new}.vhd"), str(8 * MIB)], check=True)
    (sr_dir / "not-a-vdi.txt").write_text("ignored")
    before = set(client("SR.get_VDIs", sr))
    client("SR.scan", sr)
    vdi = client("VDI.get_by_uuid", new)
    assert set(client("SR.get_VDIs", sr)) == before | {vdi}
    assert int(client("VDI.get_virtual_size", vdi)) == 8 * MIB
    assert client("VDI.get_location", vdi) == new
    (sr_dir / f"{new}.vhd").unlink()
    client("SR.scan", sr)
    assert set(client("SR.get_VDIs", sr)) == before
