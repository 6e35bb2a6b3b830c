"""SR.*: scan, supported types, space accounting refresh."""
from __future__ import annotations

from ..call import Call
from ..registry import api
from .vdi import update_sr_usage


@api("SR", "scan")
def scan(call: Call, sr: str) -> str:
    call.store.get("SR", sr)
    update_sr_usage(call, sr)
    return ""


@api("SR", "update")
def update(call: Call, sr: str) -> str:
    return scan(call, sr)


@api("SR", "get_supported_types")
def get_supported_types(call: Call) -> list[str]:
    return ["ext", "nfs", "lvm", "lvmoiscsi", "iso", "udev", "file"]
