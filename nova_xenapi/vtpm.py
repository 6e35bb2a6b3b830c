"""Virtual TPMs: a server whose flavor or image asks for TPM 2.0 gets a XAPI ``VTPM``.

What XenServer 8 and XCP-ng 8.3 offer, read in xen-api:

- one VTPM per VM, made while the VM is halted (``xapi_vtpm.ml``), when the
  pool's ``restrictions`` say ``restrict_vtpm: false``;
- a TPM 2.0 on QEMU's CRB interface (xenopsd ``device.ml`` starts QEMU with
  ``-device tpm-crb``), so TIS and TPM 1.2 are not offered;
- for UEFI guests only: xapi refuses to start a BIOS VM that has one
  (``xapi_xenops.ml``);
- its state is kept by xapi in the pool's database, not in a key manager:
  Nova's ``hw:tpm_secret_security=host`` is the matching policy (no Barbican
  secret is made), and the one under which Nova allows live migration, which
  keeps the VTPM (in a pool the VM keeps its record; across pools xapi sends
  the state with the VM).

So the host reports the traits COMPUTE_SECURITY_TPM_2_0, _TPM_CRB and
_TPM_SECRET_SECURITY_HOST while the pool offers vTPMs, and a flavor asks for
one with ``hw:tpm_version=2.0``, ``hw:tpm_model=tpm-crb`` and
``hw:tpm_secret_security=host``. The VTPM is unique (xapi never copies its
state to a clone), is made right after the VM, and goes with ``VM.destroy``.
A resize or cold migration makes a new VM from the disks, which would lose
the TPM's state, so it is refused for a server that has one; a snapshot is
of the root disk only, and holds no TPM state.
"""

from __future__ import annotations

from typing import Any

import os_traits as ot
from nova import exception
from nova.objects import fields
from nova.virt import hardware

from nova_xenapi.session import XenAPISession

FEATURE = "restrict_vtpm"
#: the traits of a host whose pool offers vTPMs, and those it never has
OFFERED = (ot.COMPUTE_SECURITY_TPM_2_0, ot.COMPUTE_SECURITY_TPM_CRB,
           ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST)
NEVER = (ot.COMPUTE_SECURITY_TPM_1_2, ot.COMPUTE_SECURITY_TPM_TIS,
         ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER,
         ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT)


def offered(session: XenAPISession) -> bool:
    """Whether the pool lets its VMs have a VTPM."""
    pools = session.call_xenapi("pool.get_all_records")
    return any(p.get("restrictions", {}).get(FEATURE) == "false" for p in pools.values())


def update_traits(session: XenAPISession, provider_tree: Any, nodename: str) -> None:
    """The TPM traits of the node, as the pool offers vTPMs now (a licence may change)."""
    provider_tree.remove_traits(nodename, *NEVER)
    if offered(session):
        provider_tree.add_traits(nodename, *OFFERED)
    else:
        provider_tree.remove_traits(nodename, *OFFERED)


def wanted(instance: Any, image_meta: Any, boot_mode: str) -> bool:
    """Whether the server gets a VTPM; a clear refusal for what XAPI cannot give."""
    config = hardware.get_vtpm_constraint(instance.flavor, image_meta)
    if config is None:
        return False
    if config.version != fields.TPMVersion.v2_0:
        raise _unsupported(instance, f"TPM {config.version}: XenServer offers TPM 2.0 only")
    if config.model != fields.TPMModel.CRB:
        raise _unsupported(instance, f"the {config.model} TPM model: XenServer's vTPM is a "
                                     "CRB device (hw:tpm_model=tpm-crb)")
    security = hardware.get_tpm_secret_security_constraint(instance.flavor) or "user"
    if security != "host":
        raise _unsupported(instance, f"hw:tpm_secret_security={security}: XAPI keeps the TPM's "
                                     "state itself (hw:tpm_secret_security=host)")
    if boot_mode != "uefi":
        raise _unsupported(instance, "a vTPM on a BIOS guest: XAPI gives vTPMs to UEFI guests "
                                     "only (hw_firmware_type=uefi)")
    return True


def _unsupported(instance: Any, what: str) -> exception.InvalidInput:
    # InvalidInput aborts the build (no reschedule): no host of this driver would do better
    return exception.InvalidInput(reason=f"{instance.name}: cannot boot with {what}")


def add(session: XenAPISession, vm_ref: str) -> str:
    """A VTPM for the halted VM ``vm_ref``; it goes when the VM is destroyed."""
    return session.call_xenapi("VTPM.create", vm_ref, True)


def has(session: XenAPISession, vm_ref: str) -> bool:
    return bool(session.call_xenapi("VM.get_VTPMs", vm_ref))
