"""``cache_images``: base images kept in the SR and cloned for each instance.

As the old driver did: with ``all`` (the default) every image, with ``some``
only images whose ``cache_in_nova`` property is true, and with ``none`` no
image, is downloaded once per SR into a base VDI (other_config
``nova_image_cache`` = image id) and each root disk is a ``VDI.clone`` of it
(copy-on-write on file SRs), grown to the flavor with ``VDI.resize``.  Base
VDIs belong to no instance, so deleting servers leaves them; Nova's image
cache manager asks ``manage_image_cache`` to remove those no instance uses.
"""

from __future__ import annotations

from typing import Any

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks

LOG = logging.getLogger(__name__)

CACHE_KEY = "nova_image_cache"
BYTES_KEY = "nova_image_bytes"  # set once the base holds the whole image, with FILLING gone
#: other_config mark of a base still being written: the uuid of the XAPI host whose compute
#: writes it. Such a base is never cloned, and its compute removes it at start-up if it died
#: while writing (leftovers.py)
FILLING = "nova_filling_by"


def wanted(policy: str, image_meta: Any) -> bool:
    if policy == "all":
        return True
    if policy == "some":
        props = image_meta.properties if image_meta.obj_attr_is_set("properties") else None
        return bool(props is not None and str(props.get("cache_in_nova", False)).lower() == "true")
    return False


def _label(image_id: str) -> str:
    return f"Glance image {image_id}"


def find(session: XenAPISession, sr: str, image_id: str) -> str | None:
    for ref in session.call_xenapi("VDI.get_by_name_label", _label(image_id)):
        rec = session.get_record("VDI", ref)
        if rec and rec["SR"] == sr and rec["other_config"].get(CACHE_KEY) == image_id \
                and BYTES_KEY in rec["other_config"]:
            return ref
    return None


def base_image(session: XenAPISession, sr: str, image_meta: Any, size: int,
               fetch: Any) -> tuple[str, int]:
    """The cached base VDI of the image and its bytes; ``fetch(size, name, other_config)`` makes
    it (returning the VDI and the bytes it took) on first use."""
    with lockutils.lock(f"xenapi-image-cache-{sr}-{image_meta.id}"):
        base = find(session, sr, image_meta.id)
        if base is None:
            base, written = fetch(size, _label(image_meta.id),
                                  {CACHE_KEY: image_meta.id, FILLING: session.host_uuid})
            try:
                session.call_xenapi("VDI.set_other_config", base,
                                    {CACHE_KEY: image_meta.id, BYTES_KEY: str(written)})
            except BaseException:
                disks.destroy_vdi(session, base)
                raise
            LOG.info("Cached image %s in its SR", image_meta.id)
            return base, written
        other = session.call_xenapi("VDI.get_other_config", base)
        return base, int(other.get(BYTES_KEY, "0"))


def clone(session: XenAPISession, base: str, instance_uuid: str, name_label: str, size: int) -> str:
    """A root disk for an instance, cloned from the base and grown to ``size``."""
    vdi = session.call_async("VDI.clone", base, {}, timeout=None)
    try:
        session.call_xenapi("VDI.set_other_config", vdi,
                            {"nova_instance_uuid": instance_uuid, "nova_disk_type": "root"})
        session.call_xenapi("VDI.set_name_label", vdi, name_label)
        if disks.virtual_size(session, vdi) < size:
            session.call_xenapi("VDI.resize", vdi, str(size))
    except BaseException:
        disks.destroy_vdi(session, vdi)
        raise
    return vdi


def remove_unused(session: XenAPISession, images_in_use: set[str]) -> list[str]:
    """Destroy base VDIs of images no instance uses; return their image ids."""
    removed = []
    for ref, rec in session.call_xenapi("VDI.get_all_records").items():
        image = rec["other_config"].get(CACHE_KEY)
        if image and image not in images_in_use and not rec["VBDs"] \
                and FILLING not in rec["other_config"]:  # being written now, or leftovers.py's
            try:
                disks.destroy_vdi(session, ref)
                removed.append(image)
            except XenAPIError as exc:
                LOG.warning("Could not remove the cached image %s: %s", image, exc)
    return removed
