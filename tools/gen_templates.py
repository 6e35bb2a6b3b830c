"""Generate xapisim's default templates from a checkout of XenServer's guest-templates-json.

A XenServer 8 / XCP-ng 8.3 host installs its default templates at first boot
from the JSON files of ``xenserver/guest-templates-json`` (``json/*.json``):
each file with a ``uuid`` is a template, ``derived_from`` names a base file
whose values it overrides, and the loader turns the result into a VM record
that it imports with ``PUT /import_metadata?restore=true`` before marking it
``is_default_template``.  This script applies the same rules and writes the
resulting records, limited to fields of xapi's VM class, to
``xapisim/datamodel/templates.json``, so xapisim needs no checkout at run
time.  Usage::

    python tools/gen_templates.py /path/to/guest-templates-json [commit]
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "xapisim" / "datamodel" / "xenapi_model.json"
OUT = ROOT / "xapisim" / "datamodel" / "templates.json"
SCALE = {"t": 40, "g": 30, "m": 20, "k": 10}
# keys of the JSON that describe rather than set a VM field
PSEUDO = {"derived_from", "min_memory", "max_memory", "vcpus_max", "vcpus_min", "number_of_vbds",
          "number_of_vifs", "allow_gpu_passthrough", "allow_vgpu", "allow_network_sriov",
          "supports_bios", "supports_uefi", "supports_secure_boot", "has_vendor_device", "disks",
          "nx", "acpi", "apic", "pae", "hpet", "secureboot", "platform", "other_config"}
RESTRICTIONS = [("memory-static-max", "max", "max_memory"), ("vcpus-min", "min", "vcpus_min"),
                ("vcpus-max", "max", "vcpus_max"), ("has-vendor-device", "value", "has_vendor_device"),
                ("allow-gpu-passthrough", "value", "allow_gpu_passthrough"),
                ("allow-vgpu", "value", "allow_vgpu"),
                ("allow-network-sriov", "value", "allow_network_sriov"),
                ("supports-bios", "value", "supports_bios"), ("supports-uefi", "value", "supports_uefi"),
                ("supports-secure-boot", "value", "supports_secure_boot")]


def amount(text: str) -> int:
    m = re.fullmatch(r"(\d+)([TtGgMmKk])?", text)
    if not m:
        raise ValueError(f"bad amount {text!r}")
    return int(m.group(1)) << SCALE.get((m.group(2) or "").lower(), 0)


def truthy(v) -> bool:
    return v.lower() in ("t", "true", "y", "yes", "1") if isinstance(v, str) else bool(v)


def merged(files: dict[str, dict], name: str) -> dict:
    """The template's JSON with its bases applied (a derived key replaces the base's)."""
    data = files[name]
    if "derived_from" not in data:
        return {"_chain": [data]}
    base = merged(files, data["derived_from"])
    return {"_chain": base["_chain"] + [data]}


def record(chain: list[dict], vm_fields: set[str]) -> dict:
    rec: dict = {"VCPUs_max": 1, "VCPUs_at_startup": 1, "HVM_shadow_multiplier": 1.0,
                 "HVM_boot_params": {}, "HVM_boot_policy": "", "PV_bootloader": "", "PV_kernel": "",
                 "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": ""}
    platform: dict = {}
    other: dict = {}
    restr: dict = {}
    for i, layer in enumerate(chain):
        base = i == 0
        for key, true_v, false_v in (("nx", "true", "false"), ("acpi", "1", "0"),
                                     ("apic", "true", "false"), ("pae", "true", "false"),
                                     ("hpet", "true", "false"), ("secureboot", "true", "false")):
            if base or key in layer:
                platform[key] = true_v if truthy(layer.get(key, True)) else false_v
        platform.update(layer.get("platform", {}))
        if "disks" in layer:
            parts = []
            for n, d in enumerate(layer["disks"]):
                attrs = {"size": str(amount(d["size"])), "sr": d.get("sr", ""),
                         "bootable": "true" if d.get("bootable", True) else "false",
                         "type": d.get("type", "system"), "device": str(n)}
                parts.append("<disk " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
                             + "/>")
            other["disks"] = "<provision>" + "".join(parts) + "</provision>"
        other.update(layer.get("other_config", {}))
        for _, _, key in RESTRICTIONS + [(None, None, "number_of_vbds"),
                                         (None, None, "number_of_vifs")]:
            if key in layer:
                restr[key] = layer[key]
        if base and "has_vendor_device" not in restr:
            restr["has_vendor_device"] = False
        for k, v in layer.items():
            if k not in PSEUDO and k in vm_fields:
                rec[k] = v
        if "min_memory" in layer:
            m = amount(layer["min_memory"])
            rec.update(memory_static_min=m, memory_static_max=2 * m, memory_dynamic_min=2 * m,
                       memory_dynamic_max=2 * m)
    rec["platform"] = platform
    rec["other_config"] = other
    for k, v in rec.items():  # the loader's ova.xml leaves out map entries with empty values
        if isinstance(v, dict):
            rec[k] = {a: b for a, b in v.items() if b}
    rec["recommendations"] = recommendations(restr)
    rec["domain_type"] = "hvm" if rec["HVM_boot_policy"] else "pv"
    return rec


def recommendations(r: dict) -> str:
    out = []
    for field, attr, key in RESTRICTIONS:
        if key not in r:
            continue
        v = r[key]
        if key == "max_memory":
            v = str(amount(v))
        elif key in ("supports_bios", "supports_uefi", "supports_secure_boot"):
            v = "yes" if truthy(v) else "no"
        elif key in ("allow_gpu_passthrough", "allow_vgpu", "allow_network_sriov"):
            v = "1" if truthy(v) else "0"
        elif key == "has_vendor_device":
            v = "true" if truthy(v) else "false"
        out.append(f'<restriction field="{field}" {attr}="{v}"/>')
    for prop, key in (("number-of-vbds", "number_of_vbds"), ("number-of-vifs", "number_of_vifs")):
        out.append(f'<restriction property="{prop}" max="{r.get(key, "")}"/>')
    return "<restrictions>" + "".join(out) + "</restrictions>"


def main() -> None:
    checkout = Path(sys.argv[1])
    commit = sys.argv[2] if len(sys.argv) > 2 else ""
    vm_fields = set(json.loads(MODEL.read_text())["classes"]["VM"]["fields"])
    files = {p.name: json.loads(p.read_text()) for p in sorted((checkout / "json").glob("*.json"))}
    templates = [record(merged(files, n)["_chain"], vm_fields)
                 for n, d in sorted(files.items()) if "uuid" in d]
    OUT.write_text(json.dumps({"source": f"xenserver/guest-templates-json {commit}".strip(),
                               "templates": sorted(templates, key=lambda t: t["name_label"])},
                              indent=1, sort_keys=True) + "\n")
    print(f"{len(templates)} templates -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
