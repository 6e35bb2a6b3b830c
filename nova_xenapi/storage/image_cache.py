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


def clone(session: XenAPISession, sr: str, base: str, instance_uuid: str, name_label: str,
          size: int) -> str:
    """A root disk for an instance, cloned from the base and grown to ``size``.

    A clone whose outcome is lost (its task gone with a xapi restart, the
    connection with the answer dropped) may still have been made: it is a
    copy of the base, cache marks and all, and would pass for a second base.
    So the SR's VDIs are listed before the clone, and after such a failure the
    one new VDI that is an unowned copy of this base is removed. Clones of one
    base are made one at a time on this host; if another host cloned the same
    base in the same moment, two such VDIs appear and both are left (the other
    host tags its own at once), with a warning."""
    with lockutils.lock(f"xenapi-image-clone-{base}"):
        before = set(session.call_xenapi("SR.get_VDIs", sr))
        try:
            vdi = session.call_async("VDI.clone", base, {}, timeout=None)
        except Exception:
            _remove_lost_clone(session, sr, base, before)
            raise
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


def _remove_lost_clone(session: XenAPISession, sr: str, base: str, before: set[str]) -> None:
    try:
        image_id = session.again(session.call_xenapi, "VDI.get_other_config", base).get(CACHE_KEY)
        new = set(session.again(session.call_xenapi, "SR.get_VDIs", sr)) - before - {base}
        lost = []
        for ref in new:
            rec = session.get_record("VDI", ref)
            if rec and rec["other_config"].get(CACHE_KEY) == image_id and not rec["VBDs"] \
                    and "nova_instance_uuid" not in rec["other_config"]:
                lost.append(ref)
        if len(lost) == 1:
            disks.destroy_vdi(session, lost[0])
            LOG.info("Removed the clone of image %s whose answer was lost", image_id)
        elif lost:
            LOG.warning("%d unowned clones of image %s appeared at once; leaving them",
                        len(lost), image_id)
    except Exception as exc:  # noqa: BLE001 - the clone's own failure is what the caller sees
        LOG.warning("Could not look for a lost clone of %s: %s", base, exc)


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
