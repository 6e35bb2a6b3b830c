"""The ``xenapi:`` flavor extra specs, for Nova's API to validate (entry point
``nova.api.extra_spec_validators``), as Nova's own drivers' namespaces are."""

from __future__ import annotations

from nova.api.validation.extra_specs import base

from nova_xenapi import disk_qos

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=disk_qos.PRIORITY,
        description=(
            "The I/O priority of the server's own disks in dom0 (a VBD's ionice QoS): "
            "best-effort at highest, high, normal, low or lowest, or idle."),
        value={"type": str, "enum": list(disk_qos.PRIORITIES)},
    ),
]


def register() -> list:
    return EXTRA_SPEC_VALIDATORS
