"""Where an ``nfs`` SR a client introduced keeps its files: SM's NFSSR mount, over a directory.

xapisim runs no NFS server.  ``SimConfig.nfs_exports`` maps an export,
``"<server>:<path>"``, to a local directory; ``PBD.plug`` of an NFS SR
"mounts" ``device_config:server`` and ``serverpath`` by finding the export
that holds ``serverpath`` and using the directory below it.  The rest
follows NFSSR.load/attach (xapi-project/sm, libs/sm/drivers/NFSSR.py):

* ``server`` and ``serverpath`` are required (SM's ConfigServerMissing 102,
  ConfigServerPathMissing 101);
* ``nfsversion``, if given, is one NFS knows (NFSVersion 72);
* the SR lives in ``serverpath/<sr-uuid>`` unless the SR's
  ``sm_config:nosubdir`` is ``true``, when it is ``serverpath`` itself;
* a server, export or directory that is not there fails the mount
  (NFSMount 73).

The SRs xapisim makes itself at install (the shared SR of ``--shared-sr
nfs``) keep the directory they were made with.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from .sm_errors import sm_error

NFS_VERSIONS = ("3", "4", "4.0", "4.1", "4.2")


def export_dir(exports: dict[str, str], device_config: dict, sm_config: dict,
               sr_uuid: str) -> Path:
    """The local directory an NFS SR's PBD mounts."""
    server = device_config.get("server")
    if not server:
        raise sm_error("ConfigServerMissing")
    if "serverpath" not in device_config:
        raise sm_error("ConfigServerPathMissing")
    version = device_config.get("nfsversion")
    if version is not None and version not in NFS_VERSIONS:
        raise sm_error("NFSVersion", f"{version} is not a supported NFS version")
    wanted = PurePosixPath("/" + device_config["serverpath"].strip("/"))
    if sm_config.get("nosubdir") != "true":
        wanted = wanted / sr_uuid
    for export, directory in sorted(exports.items(), key=lambda e: -len(e[0])):
        host, _, path = export.partition(":")
        root = PurePosixPath("/" + path.strip("/"))
        if host != server or not (wanted == root or root in wanted.parents):
            continue
        target = Path(directory) / wanted.relative_to(root)
        if target.is_dir():
            return target
        break
    raise sm_error("NFSMount", f"mount of {server}:{wanted} failed: no such export or directory")
