#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: VHD chains between two hosts' dom0s, for resize and cold migration.

On the source, ``stage_vhds`` puts the chain (leaf first) of one of the
instance's disks (``disk``: ``root`` or ``ephemeral<n>``) under
``/images/instance<uuid>/<disk>/`` as ``0.vhd`` .. ``N.vhd``: hard links, since
``/images`` lies in the SR (xenapi-bootstrap links it there), so the staged
chain stays as it was even if the SR's garbage collector rewrites a file.
On the destination, ``receive_vhds`` fetches those files from the source's
dom0 over SFTP as root (``sftp`` in batch mode with root's own key and the
known_hosts of dom0: the root trust between dom0s that migrations have
always needed; host keys are checked) into a staging directory inside its
SR, then gives them the caller's UUIDs, relinks and checks the chain and
moves it in, as the Glance download does.  ``remove_staged`` removes an
instance's staged disks once the migration is confirmed or reverted.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import dom0_pluginlib
import dom0_vhdchain
import XenAPIPlugin

IMAGES = "/images"
SSH_DIR = "/root/.ssh"
# AES-GCM first: authenticated encryption in one pass (AES-NI), no separate MAC per packet;
# the CTR modes after it for a dom0 whose sshd is configured without GCM
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr"
KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
TIMEOUT = 3600
# a host name or an IPv4/IPv6 address; never starts with "-" (no option can hide in it)
_DISK = re.compile(r"\A(root|ephemeral[0-9]{1,2})\Z")
_HOST = re.compile(r"\A(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|[0-9A-Fa-f:.]{2,45})\Z")
fail = dom0_vhdchain.fail


def _instance(args):
    return dom0_vhdchain.uuid_arg(dom0_pluginlib.arg(args, "instance_uuid"), "instance_uuid")


def _disk(args):
    disk = dom0_pluginlib.arg(args, "disk")
    if not _DISK.match(disk):
        dom0_pluginlib.invalid("disk", disk, "not root or ephemeral<n>")
    return disk


def _staged_dir(instance, *disk):
    images = dom0_pluginlib.host_path(IMAGES)
    if not os.path.isdir(images):
        fail("IMAGES_DIR_MISSING", IMAGES, "run xenapi-bootstrap to link it into the SR")
    return dom0_pluginlib.path_under(IMAGES, "instance" + instance, *disk)


def stage_vhds(session, args):
    instance = _instance(args)
    disk = _disk(args)
    sr = dom0_vhdchain.sr_path(args)
    chain = dom0_vhdchain.uuids_arg(args, "vdi_uuids")
    files = dom0_vhdchain.chain_files(sr, chain, "MIGRATION", instance)
    target = _staged_dir(instance, disk)
    if os.path.exists(target):
        shutil.rmtree(target)  # an earlier attempt's: the chain is staged afresh
    os.makedirs(target, 0o700)
    try:
        for n, path in enumerate(files):
            staged = os.path.join(target, f"{n}.vhd")
            try:
                os.link(path, staged)
            except OSError:  # /images on another filesystem than the SR
                shutil.copyfile(path, staged)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return json.dumps({"count": len(files), "bytes": sum(os.path.getsize(f) for f in files)})


def _ssh_options(port):
    ssh_dir = dom0_pluginlib.host_path(SSH_DIR)
    options = ["-P", str(port), "-B", "131072", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", "Ciphers=" + CIPHERS,
               "-o", "UserKnownHostsFile=" + os.path.join(ssh_dir, "known_hosts"),
               "-o", "IdentitiesOnly=yes"]
    for key in KEYS:
        if os.path.exists(os.path.join(ssh_dir, key)):
            options += ["-i", os.path.join(ssh_dir, key)]
    return options


def receive_vhds(session, args):
    instance = _instance(args)
    disk = _disk(args)
    host = dom0_pluginlib.arg(args, "source_host")
    if not _HOST.match(host) or ".." in host:
        dom0_pluginlib.invalid("source_host", host, "not a host name or address")
    port = dom0_pluginlib.int_arg(args, "source_port", 1, 65535)
    count = dom0_pluginlib.int_arg(args, "count", 1, dom0_vhdchain.MAX_CHAIN)
    uuids = dom0_vhdchain.uuids_arg(args, "uuids")
    if count > len(uuids):
        dom0_pluginlib.invalid("count", count, f"more VHDs than the {len(uuids)} UUIDs given")
    sr = dom0_vhdchain.sr_path(args)
    staging = tempfile.mkdtemp(prefix=".nova-staging-", dir=sr)
    try:
        remote = f"{IMAGES}/instance{instance}/{disk}"
        batch = "".join(f'get "{remote}/{n}.vhd" "{staging}/{n}.vhd"\n' for n in range(count))
        target = "[" + host + "]" if ":" in host else host
        try:
            proc = subprocess.run(["sftp", "-b", "-"] + _ssh_options(port) + ["root@" + target],
                                  input=batch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            fail("MIGRATION_TRANSFER_FAILED", instance, host, f"no answer in {TIMEOUT} s")
        if proc.returncode != 0:
            fail("MIGRATION_TRANSFER_FAILED", instance, host, " ".join(proc.stdout.split())[-300:])
        paths = dom0_vhdchain.link_chain(staging, count, uuids, "MIGRATION", instance)
        dom0_vhdchain.move_into_sr(paths, sr)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json.dumps({"root": {"uuid": uuids[0]}, "vdis": uuids[:count]})


def remove_staged(session, args):
    target = _staged_dir(_instance(args))
    if not os.path.isdir(target):
        return "absent"
    shutil.rmtree(target)
    return "removed"


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"stage_vhds": stage_vhds, "receive_vhds": receive_vhds,
                           "remove_staged": remove_staged})
