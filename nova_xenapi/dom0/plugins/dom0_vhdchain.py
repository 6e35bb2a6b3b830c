"""Helpers for the nova-xenapi dom0 plugins that move VHD chains in and out of a file SR.

A chain travels as ``0.vhd`` .. ``N.vhd``, leaf first, each the parent of
the one before.  Coming in, the files sit in a staging directory inside the
SR until ``link_chain`` has given them their UUIDs, relinked each to its
parent, hidden the parents and checked the whole chain; ``move_into_sr``
then moves them in, parents first.  Going out, ``chain_files`` checks that
the VHDs named really form the chain.  Failures name the caller's subject
(an image, an instance) under the caller's error prefix.
"""

import os
import re
import subprocess

import dom0_pluginlib
import XenAPIPlugin

SR_MOUNT = "/var/run/sr-mount"
MAX_CHAIN = 30
UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def fail(code, *params):
    raise XenAPIPlugin.Failure(code, [str(p) for p in params])


def uuid_arg(value, name):
    if not UUID.match(value):
        dom0_pluginlib.invalid(name, value, "not a UUID")
    return value


def uuids_arg(args, name):
    values = [v for v in dom0_pluginlib.arg(args, name).split(",") if v]
    if not 1 <= len(values) <= MAX_CHAIN:
        dom0_pluginlib.invalid(name, len(values), f"between 1 and {MAX_CHAIN} UUIDs expected")
    if len(set(values)) != len(values):
        dom0_pluginlib.invalid(name, args[name], "repeated UUID")
    return [uuid_arg(v, name) for v in values]


def sr_path(args):
    sr = uuid_arg(dom0_pluginlib.arg(args, "sr_uuid"), "sr_uuid")
    path = dom0_pluginlib.host_path(SR_MOUNT + "/" + sr)  # a UUID: no path can hide in it
    if not os.path.isdir(path):
        fail("SR_NOT_MOUNTED", sr)
    return path


def vhd_util(*args):
    proc = subprocess.run(["vhd-util"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    return proc.returncode, proc.stdout.strip()


def chain_files(sr, chain, prefix, subject):
    """The SR files of the VHDs ``chain`` names (leaf first), refused unless each is the parent
    of the one before."""
    files = []
    for n, vdi in enumerate(chain):
        path = os.path.join(sr, f"{vdi}.vhd")
        if not os.path.isfile(path):
            fail("VDI_MISSING", vdi)
        if n + 1 < len(chain):
            rc, out = vhd_util("query", "-n", path, "-p")
            if rc or os.path.basename(out) != f"{chain[n + 1]}.vhd":
                fail(prefix + "_BAD_CHAIN", subject, f"{chain[n + 1]} is not the parent of {vdi}")
        files.append(path)
    return files


def link_chain(staging, count, uuids, prefix, subject):
    """Rename ``<n>.vhd`` to ``<uuid>.vhd``, relink base → leaf, hide parents, check; the paths."""
    paths = []
    for n in range(count):
        path = os.path.join(staging, f"{uuids[n]}.vhd")
        os.rename(os.path.join(staging, f"{n}.vhd"), path)
        paths.append(path)
        rc, out = vhd_util("check", "-n", path)  # each file as it came, before any change
        if rc:
            fail(prefix + "_INVALID_VHD", subject, " ".join(out.split())[:300])
    for n in reversed(range(count - 1)):
        rc, out = vhd_util("modify", "-n", paths[n], "-p", paths[n + 1])
        if rc:
            fail(prefix + "_BAD_CHAIN", subject, out[:200])
    rc, out = vhd_util("query", "-n", paths[0], "-f")
    if rc or "hidden: 0" not in out:
        fail(prefix + "_BAD_CHAIN", subject, "the leaf VHD is missing or hidden")
    for parent in paths[1:]:
        rc, out = vhd_util("set", "-n", parent, "-f", "hidden", "-v", "1")
        if rc:
            fail(prefix + "_BAD_CHAIN", subject, out[:200])
    rc, out = vhd_util("check", "-n", paths[0], "-p")
    if rc:
        fail(prefix + "_INVALID_VHD", subject, " ".join(out.split())[:300])
    rc, out = vhd_util("query", "-n", paths[-1], "-p")
    if rc or not out.endswith("has no parent"):
        fail(prefix + "_BAD_CHAIN", subject, "the last VHD of the chain has a parent")
    return paths


def move_into_sr(paths, sr):
    """Move checked VHDs into the SR, parents first (a scan never sees a leaf without its
    parent); if one cannot go, the ones already moved are removed again."""
    moved = []
    try:
        for path in reversed(paths):
            target = os.path.join(sr, os.path.basename(path))
            if os.path.exists(target):
                fail("VDI_EXISTS", os.path.basename(path))
            os.rename(path, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            os.remove(target)
        raise
