#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: a Cinder NFS volume's file as a raw VDI of its NFS SR.

Cinder's NFS driver names a volume's file ``volume-<id>`` at the root of
its export; SM's FileSR only sees ``<uuid>.vhd`` and ``<uuid>.raw`` files.
With the export introduced as an NFS SR whose ``sm_config:nosubdir`` is
``true`` (plugged, so mounted at ``/var/run/sr-mount/<sr-uuid>``),
``link_volume`` gives the volume's file a second name, ``<vdi-uuid>.raw``,
a hard link on the same NFS file system; the next ``SR.scan`` makes it a
VDI whose bytes are the volume's.  ``unlink_volume`` removes that name
again, only while the volume's own name still holds the data.  Nothing
here writes or deletes a volume's data.
"""

import os
import re

import dom0_pluginlib
import XenAPIPlugin

MOUNTS = "/var/run/sr-mount"
_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")  # one file name, no path


def _checked(args, key, pattern):
    value = dom0_pluginlib.arg(args, key)
    if not pattern.match(value):
        dom0_pluginlib.invalid(key, value, "not an accepted name")
    return value


def _sr_dir(args):
    sr_uuid = _checked(args, "sr_uuid", _UUID)
    path = dom0_pluginlib.host_path(MOUNTS + "/" + sr_uuid)  # a UUID: no path can hide in it
    if not os.path.isdir(path):
        raise XenAPIPlugin.Failure("SR_NOT_MOUNTED", [sr_uuid])
    return path


def _names(args):
    """(the SR's directory, the volume's file name, the VDI's file name)."""
    sr = _sr_dir(args)
    name = _checked(args, "name", _NAME)
    if name.endswith((".vhd", ".raw")):
        dom0_pluginlib.invalid("name", name, "already a VDI's file name")
    return sr, name, _checked(args, "vdi_uuid", _UUID) + ".raw"


def link_volume(session, args):
    sr, name, link = _names(args)
    source = os.path.join(sr, name)
    target = os.path.join(sr, link)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise XenAPIPlugin.Failure("VOLUME_FILE_MISSING", [name]) from None
    if not os.path.isfile(source) or os.path.islink(source):
        raise XenAPIPlugin.Failure("VOLUME_FILE_NOT_REGULAR", [name])
    try:
        os.link(source, target)
    except FileExistsError:
        if os.lstat(target).st_ino != st.st_ino:
            raise XenAPIPlugin.Failure("VDI_FILE_EXISTS", [link]) from None
    return link


def unlink_volume(session, args):
    sr, name, link = _names(args)
    target = os.path.join(sr, link)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return ""
    try:
        same = os.lstat(os.path.join(sr, name)).st_ino == st.st_ino
    except FileNotFoundError:
        same = False
    if not same:  # the volume's own name is gone or another file: this name keeps the data
        raise XenAPIPlugin.Failure("VOLUME_FILE_MISSING", [name]) from None
    os.unlink(target)
    return link


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"link_volume": link_volume, "unlink_volume": unlink_volume})
