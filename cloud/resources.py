"""What ``up`` registers once the cloud answers: an image, a flavor, a provider network.

The image is what the default image handler (direct_vhd) boots: a tar of a
two-VHD chain, disk_format vhd, container_format ovf, as the old driver's
snapshots were, whose disk has distinct bytes (so a round trip is
checkable); the flavor is ``m1.tiny``-sized; the network is a flat provider
network on ``physnet1`` with a subnet, shared so every project can use it.
Each is made only if missing, so a second ``up`` changes nothing.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from nova_xenapi.testing import vhd_images

from .control_plane import admin_connection
from .state import State

IMAGE = "xs-guest-vhd"
IMAGE_MIB = 64
#: (offset, bytes) written in the base VHD, then in its child
LAYERS = [{0: b"base-" * 100_000}, {1 << 20: b"leaf-" * 50_000}]
FLAVOR = "x1.tiny"
NETWORK = "provider"
SUBNET_CIDR = "192.0.2.0/24"


def image_tarball(workdir: Path) -> bytes:
    return vhd_images.tarball(vhd_images.chain(workdir, IMAGE_MIB << 20, LAYERS))


def image_disk() -> bytes:
    """What a guest booted from the image sees on its root disk."""
    return vhd_images.expected(IMAGE_MIB << 20, LAYERS)


def ensure(state: State) -> None:
    conn = admin_connection(state)
    if conn.image.find_image(IMAGE) is None:
        with tempfile.TemporaryDirectory() as tmp:
            data = image_tarball(Path(tmp))
        conn.image.create_image(name=IMAGE, disk_format="vhd", container_format="ovf",
                                visibility="public", data=io.BytesIO(data), allow_duplicates=True)
    if conn.compute.find_flavor(FLAVOR) is None:
        conn.compute.create_flavor(name=FLAVOR, ram=256, vcpus=1, disk=1)
    net = conn.network.find_network(NETWORK)
    if net is None:
        net = conn.network.create_network(name=NETWORK, shared=True,
                                          provider_network_type="flat",
                                          provider_physical_network="physnet1")
    if not list(conn.network.subnets(network_id=net.id)):
        conn.network.create_subnet(network_id=net.id, name=f"{NETWORK}-v4", ip_version=4,
                                   cidr=SUBNET_CIDR, gateway_ip="192.0.2.1")
