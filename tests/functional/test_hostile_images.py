"""Hostile images through Nova's API: each boot fails with a clear fault and leaves nothing.

A qcow2 whose header names a backing file or an external data file, or a
differencing VHD, would have whichever machine converts it read a file of its
own (CVE-2024-32498 is that bug in Nova's libvirt driver): the streaming
handlers refuse them from the header, before a byte reaches a disk
(``storage/image_checks.py``). So are images whose content is not their
``disk_format`` and ones that end inside their own header. The direct_vhd
handler's chains (parent locators, loops, tar members) are refused by its dom0
plugin: ``tests/test_glance_vhd*.py`` and ``test_direct_vhd.py``.
"""

from __future__ import annotations

import os
import struct
import subprocess

from nova_xenapi.testing import nova_stack as base


class HostileImageTest(base.XenAPIFunctionalBase):

    def _file(self, name: str) -> str:
        return os.path.join(self.state_dir, name)

    def _qemu_img(self, *args: str) -> None:
        subprocess.run(["qemu-img", *args], check=True, capture_output=True)

    def _read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def hostile_images(self) -> list[tuple[str, bytes, str, str]]:
        """(what, bytes, disk_format, what the fault must say)."""
        secret = self._file("a-file-of-the-host")
        with open(secret, "wb") as f:
            f.write(b"not the guest's" * 4096)
        backed = self._file("backed.qcow2")
        self._qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", backed, "64M")
        data_file = self._file("data-file.qcow2")
        self._qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={secret}.data",
                       data_file, "64M")
        raw = self._file("plain.raw")
        with open(raw, "wb") as f:
            f.truncate(8 << 20)
        vhd = self._file("dynamic.vhd")
        self._qemu_img("convert", "-q", "-f", "raw", "-O", "vpc", raw, vhd)
        differencing = bytearray(self._read(vhd))
        differencing[60:64] = struct.pack(">I", 4)  # the footer copy's disk type
        qcow = self._read(backed)
        return [
            ("a qcow2 with a backing file", qcow, "qcow2", "backing file"),
            ("a qcow2 with an external data file", self._read(data_file), "qcow2", "data_file"),
            ("a differencing VHD", bytes(differencing), "vhd", "differencing VHD"),
            ("raw bytes called qcow2", self._read(raw)[:1 << 20], "qcow2", "is not qcow2"),
            ("a qcow2 cut inside its header", qcow[:100], "qcow2", "ends before its qcow2 header"),
        ]

    def test_each_hostile_image_fails_clearly_and_leaves_nothing(self):
        for what, data, disk_format, reason in self.hostile_images():
            with self.subTest(what):
                server = self._create_server(image_uuid=self.make_image(data, disk_format),
                                             networks="none", expected_state="ERROR")
                fault = self.api.get_server(server["id"])["fault"]["message"]
                self.assertIn(reason, fault)
                self.assertHostClean()
                self._delete_server(server)


class LocalDevHostileImageTest(HostileImageTest):
    """The same through ``vdi_local_dev``, where qemu-img in this compute VM would convert them."""
    IMAGE_HANDLER = "vdi_local_dev"
