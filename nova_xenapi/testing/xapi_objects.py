"""Small XAPI objects tests, benchmarks and the demo make on a (simulated) host, with the SDK."""

from __future__ import annotations


def diskless_vm(x, name: str, mem: int = 256 << 20) -> str:
    """A plain halted VM cloned from the first template, without the template's disks.

    ``x`` is an SDK ``session.xenapi`` proxy.
    """
    template = [r for r, v in x.VM.get_all_records().items() if v["is_a_template"]][0]
    vm = x.VM.clone(template, name)
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    x.VM.set_other_config(vm, {})
    x.VM.set_is_a_template(vm, False)
    x.VM.set_memory_limits(vm, str(mem), str(mem), str(mem), str(mem))
    return vm
