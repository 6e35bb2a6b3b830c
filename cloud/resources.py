"""What ``up`` registers once the cloud answers: an image, a flavor, a provider network.

The image is a small raw disk (its bytes are distinct, so a round trip is
checkable); the flavor is ``m1.tiny``-sized; the network is a flat provider
network on ``physnet1`` with a subnet, shared so every project can use it.
Each is made only if missing, so a second ``up`` changes nothing.
"""

from __future__ import annotations

import io

from .control_plane import admin_connection
from .state import State

IMAGE = "cirros-raw"
IMAGE_MIB = 16
FLAVOR = "x1.tiny"
NETWORK = "provider"
SUBNET_CIDR = "192.0.2.0/24"


def image_bytes(size: int = IMAGE_MIB << 20) -> bytes:
    block = bytes((i * 7 + 7) % 251 + 1 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def ensure(state: State) -> None:
    conn = admin_connection(state)
    if conn.image.find_image(IMAGE) is None:
        conn.image.create_image(name=IMAGE, disk_format="raw", container_format="bare",
                                visibility="public", data=io.BytesIO(image_bytes()),
                                allow_duplicates=True)
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
