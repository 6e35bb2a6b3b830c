#!/usr/bin/env python3
"""Derive xapisim's datamodel file from XAPI's published datamodel.

Reads ``xenapi.json`` (the machine-readable datamodel that xapi publishes as
``doc/data/xenapi.json``; a copy lives in ``../shared/reference/``) and writes
``xapisim/datamodel/xenapi_model.json``: classes with their fields (type,
qualifier, parsed default), messages (parameters, result, implicit or not,
async support, lifecycle state, documented errors), enums, and each error
code's parameter names (from ``xapi-errors.tsv``, the table of xapi's
``ocaml/xapi-consts/api_errors.ml``).  The simulator loads only that
file at run time.

Two facts that ``xenapi.json`` does not carry are added from the IDL source
(``ocaml/idl/datamodel*.ml`` in xapi-project/xen-api, commit e2ee48d688):

* parameter defaults (``param_default = Some ...``), which change how the
  dispatcher counts parameters;
* which custom messages are synchronous only (``~flags:[`Session]``), which
  decides the "No async mode" fault.

Both are listed below by hand, each with the file it was read from, because
the OCaml source cannot be parsed reliably without OCaml.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "reference" / "xenapi.json"
DEFAULT_ERRORS = ROOT.parent / "shared" / "reference" / "xapi-errors.tsv"
OUT = ROOT / "xapisim" / "datamodel" / "xenapi_model.json"

# (class, message) -> {param: default}; read from ocaml/idl/datamodel*.ml.
PARAM_DEFAULTS: dict[tuple[str, str], dict[str, object]] = {
    # datamodel.ml, session login_with_password
    ("session", "login_with_password"): {"version": "1.1", "originator": ""},
    # datamodel.ml, VDI.copy
    ("VDI", "copy"): {"sr": "OpaqueRef:NULL", "base_vdi": "OpaqueRef:NULL",
                      "into_vdi": "OpaqueRef:NULL"},
    # datamodel.ml, VDI.snapshot / VDI.clone
    ("VDI", "snapshot"): {"driver_params": {}},
    ("VDI", "clone"): {"driver_params": {}},
    # datamodel.ml, VDI.introduce
    ("VDI", "introduce"): {"other_config": {}},
    # datamodel_vm.ml
    ("VM", "snapshot"): {"ignore_vdis": []},
    ("VM", "migrate_send"): {"vgpu_map": {}},
    ("VM", "assert_can_migrate"): {"vgpu_map": {}},
    # datamodel_host.ml
    ("host", "evacuate"): {"network": "OpaqueRef:NULL", "evacuate_batch_size": 0},
    ("host", "emergency_ha_disable"): {"soft": False},
    ("host", "install_server_certificate"): {"certificate_chain": ""},
    ("host", "apply_edition"): {"force": False},
    # datamodel.ml, VIF.configure_ipv4/6
    ("VIF", "configure_ipv4"): {"address": "", "gateway": ""},
    ("VIF", "configure_ipv6"): {"address": "", "gateway": ""},
    # datamodel.ml, create_new_blob (generated for several classes)
    **{(c, "create_new_blob"): {"public": False}
       for c in ("pool", "VM", "host", "network", "SR")},
    ("blob", "create"): {"public": False},
    ("Bond", "create"): {"mode": "balance-slb", "properties": {}},
    ("tunnel", "create"): {"protocol": "gre"},
    ("pool", "sync_updates"): {"token": "", "token_id": ""},
}

# Custom messages declared with ~flags:[`Session] (no Async variant).  Names
# collected from ocaml/idl/datamodel*.ml; ambiguous names that are async in
# some class (create, destroy, introduce, ...) are left out.
SYNC_ONLY = {
    "login_with_password", "logout", "local_logout", "slave_local_login",
    "slave_local_login_with_password", "slave_login", "change_password",
    "from", "next", "register", "unregister", "inject", "get_current_id",
    "get_all_records_where", "get_all_where", "get_allowed_VBD_devices",
    "get_allowed_VIF_devices", "get_boot_record", "get_servertime",
    "get_server_localtime", "get_data_sources", "query_data_source",
    "record_data_source", "forget_data_source_archives", "get_since",
    "get_supported_types", "set_memory_dynamic_max", "set_memory_dynamic_min",
    "set_memory_static_max", "set_memory_static_min", "set_VCPUs_max",
    "set_VCPUs_at_startup", "set_HVM_boot_policy", "set_HVM_shadow_multiplier",
    "set_ha_always_run", "set_ha_restart_priority", "set_domain_type",
    "set_NVRAM", "add_to_NVRAM", "remove_from_NVRAM", "set_NVRAM_EFI_variables",
    "set_progress", "set_status", "set_result", "set_error_info",
    "set_physical_size", "set_physical_utilisation", "set_virtual_size",
    "set_virtual_allocation", "set_managed", "set_missing", "set_read_only",
    "set_sharable", "set_is_a_snapshot", "set_snapshot_of", "set_snapshot_time",
    "set_metadata_of_pool", "set_resident_on", "is_slave", "list_methods",
    "get_subject_identifier", "get_group_membership", "get_permissions",
    "get_permissions_name_label", "get_by_permission",
    "get_by_permission_name_label", "signal_networking_change",
    "tickle_heartbeat", "get_nbd_info", "get_alerts", "create_alert",
}


def parse_default(text: str, ftype: str):
    """Turn a printed default from xenapi.json into a JSON value."""
    text = text.strip()
    if ftype == "bool":
        return text == "true"
    if ftype == "int":
        return int(text)
    if ftype == "float":
        return float(text.rstrip(".") or 0)
    if ftype.endswith(" ref"):
        return "OpaqueRef:NULL" if text in ("Null", "") else text
    if ftype.endswith(" map"):
        inner = text.strip("{}").strip()
        if not inner:
            return {}
        return {k: v for k, v in re.findall(r'"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)"', inner)}
    if ftype.endswith(" set"):
        inner = text.strip("{}").strip()
        if not inner:
            return []
        items = [i.strip().strip('"') for i in inner.split(",")]
        return [int(i) for i in items] if ftype == "int set" else items
    if ftype == "string":
        return json.loads(text) if text.startswith('"') else text
    return text  # enums, datetimes


def error_params(tsv: Path) -> dict[str, list[str]]:
    """Every error code's parameter names, from the table of xapi's ``api_errors.ml``."""
    out = {}
    for line in tsv.read_text().splitlines()[1:]:
        code, params, _ = line.split("\t", 2)
        out[code] = [p.strip() for p in params.split(",") if p.strip()]
    return out


def convert(src: Path, errors: Path) -> dict:
    data = json.loads(src.read_text())
    classes: dict = {}
    enums: dict = {}
    for cls in data:
        name = cls["name"]
        fields = {}
        for f in cls["fields"]:
            entry = {"type": f["type"], "qualifier": f["qualifier"]}
            if "default" in f:
                entry["default"] = parse_default(f["default"], f["type"])
            if f["lifecycle"]["state"] == "Removed_s":
                entry["removed"] = True
            fields[f["name"]] = entry
        messages = {}
        for m in cls["messages"]:
            defaults = PARAM_DEFAULTS.get((name, m["name"]), {})
            params = []
            for p in m["params"]:
                param = {"name": p["name"], "type": p["type"]}
                if p["name"] in defaults:
                    param["default"] = defaults[p["name"]]
                params.append(param)
            implicit = m["implicit"]
            if implicit:
                is_async = m["name"] in ("create", "destroy")
            else:
                is_async = m["name"] not in SYNC_ONLY and not m["name"].startswith(("get_", "set_"))
            messages[m["name"]] = {
                "params": params,
                "result": m["result"][0] if m["result"] else "void",
                "implicit": implicit,
                "async": is_async,
                "removed": m["lifecycle"]["state"] == "Removed_s",
                "errors": [e["name"] for e in m["errors"]],
            }
        for e in cls["enums"]:
            enums[e["name"]] = [v["name"] for v in e["values"]]
        classes[name] = {"fields": fields, "messages": messages}
    return {"source": "xapi-project/xen-api doc/data/xenapi.json @ e2ee48d688",
            "classes": classes, "enums": enums, "error_params": error_params(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--errors", type=Path, default=DEFAULT_ERRORS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    model = convert(args.src, args.errors)
    args.out.write_text(json.dumps(model, indent=None, separators=(",", ":"), sort_keys=True))
    print(f"wrote {args.out} ({len(model['classes'])} classes)")


if __name__ == "__main__":
    main()
