"""The ``direct_vhd`` image handler: dom0 moves VHD chains between Glance and a file SR.

The ``glance_vhd`` dom0 plugin downloads the image (a tar of the VHD chain,
leaf first) from Glance's v2 API with the request's token straight into the
SR; ``SR.scan`` makes VDIs of the files and the leaf becomes the image's
VDI, grown to the flavor's disk.  A snapshot's VHD chain (the snapshot VDI
and the base copies under it, followed through ``sm_config:vhd-parent``)
goes back the same way, after the image record is set to disk_format
``vhd``, container_format ``ovf`` through Nova's Glance API.  Only file SRs
(``ext``, ``nfs``) keep VHD files dom0 can reach; any other SR is refused
when nova-compute starts.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nova import exception
from nova.image import glance
from oslo_log import log as logging

from nova_xenapi.dom0 import FILE_SR_TYPES
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks
from nova_xenapi.storage.images import HandlerNotAvailable

LOG = logging.getLogger(__name__)

PLUGIN = "glance_vhd.py"
MAX_CHAIN = 16  # UUIDs offered to the plugin: the longest chain an image may have
RETRIED = ("GLANCE_UNREACHABLE",)
DISK_FORMAT, CONTAINER_FORMAT = "vhd", "ovf"


def _plugin_error(image_id: str, exc: XenAPIError) -> Exception:
    """Nova's exception for a plugin failure (XAPI wraps it in XENAPI_PLUGIN_FAILURE)."""
    params = exc.params
    code = params[0] if exc.code == "XENAPI_PLUGIN_FAILURE" and params else exc.code
    if code in ("GLANCE_IMAGE_NOT_FOUND",):
        return exception.ImageNotFound(image_id=image_id)
    if code in ("GLANCE_UNAUTHORIZED",):
        return exception.ImageNotAuthorized(image_id=image_id)
    if code == "IMAGE_TOO_LARGE" and len(params) >= 2:  # [..., virtual size, limit]
        return exception.FlavorDiskSmallerThanImage(flavor_size=int(params[-1]),
                                                    image_size=int(params[-2]))
    return exception.ImageUnacceptable(image_id=image_id, reason=f"dom0 image transfer failed: {exc}")


class DirectVhdHandler:
    """``direct_vhd``: Glance ↔ dom0 ↔ file SR, with the ``glance_vhd`` plugin."""

    name = "direct_vhd"

    def __init__(self, image_api: Any = None, retries: int | None = None,
                 compression_level: int | None = None) -> None:
        self._glance = image_api or glance.API()
        self._retries = retries
        self._compression = compression_level  # [xenserver] image_compression_level: gzip on upload

    def check_sr(self, session: XenAPISession, sr: str) -> None:
        sr_type = session.call_xenapi("SR.get_type", sr)
        if sr_type not in FILE_SR_TYPES:
            raise HandlerNotAvailable(
                name=self.name, reason=f"it needs a file-based SR (ext or nfs) to put VHD files in, "
                f"and the SR nova-compute uses is of type {sr_type}; use image_handler = "
                "vdi_remote_stream (or vdi_local_dev) with this SR")

    def _call(self, context: Any, session: XenAPISession, fn: str, image_id: str,
              args: dict[str, str], retry: bool) -> dict:
        """Run the plugin; a download Glance could not serve is tried again ([glance] num_retries)."""
        retries = self._retries if self._retries is not None else glance.CONF.glance.num_retries
        retries = retries if retry else 0
        for attempt in range(retries + 1):
            args = {**args, "endpoint": glance.generate_glance_url(context),
                    "token": getattr(context, "auth_token", None) or ""}
            try:
                return json.loads(session.call_plugin(PLUGIN, fn, args))
            except XenAPIError as exc:
                code = exc.params[0] if exc.params else ""
                if code not in RETRIED or attempt == retries:
                    raise _plugin_error(image_id, exc) from None
                LOG.warning("Glance was unreachable from dom0 for image %s (attempt %d of %d)",
                            image_id, attempt + 1, retries + 1)
        raise AssertionError("unreachable")

    def fetch(self, context: Any, session: XenAPISession, image_meta: Any, sr: str, size: int,
              name_label: str, other_config: dict[str, str]) -> tuple[str, int]:
        image_id = image_meta.id
        if image_meta.disk_format != DISK_FORMAT:
            raise exception.ImageUnacceptable(
                image_id=image_id, reason=f"direct_vhd boots VHD images (disk_format vhd, a tar of a "
                f"VHD chain), not disk_format {image_meta.disk_format}")
        sr_uuid = session.call_xenapi("SR.get_uuid", sr)
        got = self._call(context, session, "download_vhd", image_id, {
            "image_id": image_id, "sr_uuid": sr_uuid, "max_virtual_size": str(size),
            "uuids": ",".join(str(uuid.uuid4()) for _ in range(MAX_CHAIN))}, retry=True)
        leaf_uuid = got["root"]["uuid"]
        try:
            session.call_xenapi("SR.scan", sr)
            vdi = session.call_xenapi("VDI.get_by_uuid", leaf_uuid)
        except BaseException as exc:
            # the chain is in the SR: its files, and VDIs if the scan went through
            self._remove_chain(session, sr, leaf_uuid)
            if isinstance(exc, XenAPIError) and exc.code == "UUID_INVALID":
                raise exception.ImageUnacceptable(
                    image_id=image_id, reason="the SR scan did not find the downloaded VHD") \
                    from None
            raise
        try:
            virtual = disks.virtual_size(session, vdi)
            if virtual > size:
                raise exception.FlavorDiskSmallerThanImage(flavor_size=size, image_size=virtual)
            session.call_xenapi("VDI.set_name_label", vdi, name_label)
            session.call_xenapi("VDI.set_other_config", vdi, other_config)
            if virtual < size:
                session.call_xenapi("VDI.resize", vdi, str(size))
        except BaseException:
            disks.destroy_vdi(session, vdi)  # the base copies under it go with it
            raise
        LOG.debug("dom0 put image %s into the SR as a chain of %d VHDs", image_id, len(got["vdis"]))
        return vdi, int(image_meta.size or 0) if image_meta.obj_attr_is_set("size") else 0

    @staticmethod
    def _remove_chain(session: XenAPISession, sr: str, leaf_uuid: str) -> None:
        """Remove a downloaded chain whose leaf the fetch never got hold of. The SR is scanned
        again first (a failed scan may have left the files without VDIs); the base copies
        under the leaf go with it."""
        try:
            session.call_xenapi("SR.scan", sr)
            vdi = session.call_xenapi("VDI.get_by_uuid", leaf_uuid)
        except Exception as exc:  # noqa: BLE001 - the fetch's own error is the one to raise
            LOG.warning("could not remove the downloaded chain %s from SR %s: %s", leaf_uuid,
                        sr, exc)
            return
        disks.destroy_vdi(session, vdi)

    def upload(self, context: Any, session: XenAPISession, image_id: str, vdi: str,
               metadata: dict) -> None:
        meta = dict(metadata)
        meta.update(disk_format=DISK_FORMAT, container_format=CONTAINER_FORMAT)
        self._glance.update(context, image_id, meta, purge_props=False)
        sr_uuid = session.call_xenapi("SR.get_uuid", session.call_xenapi("VDI.get_SR", vdi))
        args = {"image_id": image_id, "sr_uuid": sr_uuid,
                "vdi_uuids": ",".join(disks.vhd_chain(session, vdi))}
        if self._compression:
            args["compression_level"] = str(self._compression)
        self._call(context, session, "upload_vhd", image_id, args, retry=False)
