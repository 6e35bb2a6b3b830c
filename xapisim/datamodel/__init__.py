"""The XAPI datamodel as xapisim sees it: classes, fields, messages, enums.

Loaded from ``xenapi_model.json``, which ``tools/gen_datamodel.py`` derives
from xapi's published ``xenapi.json``.  This module also parses XAPI type
strings (``"(string -> enum vm_operations) map"``) into small type objects
used to check parameters and build default values.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

_MODEL_FILE = Path(__file__).with_name("xenapi_model.json")
NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


@dataclass(frozen=True)
class XType:
    """A parsed XAPI type: kind is prim name, 'ref', 'enum', 'set', 'map', 'record'."""

    kind: str
    name: str = ""  # class for ref/record, enum name for enum
    elem: XType | None = None  # set element / map key
    value: XType | None = None  # map value

    def zero(self):
        """The value a field of this type holds when nothing set it."""
        if self.kind == "int":
            return 0
        if self.kind == "float":
            return 0.0
        if self.kind == "bool":
            return False
        if self.kind == "datetime":
            return EPOCH
        if self.kind == "ref":
            return NULL_REF
        if self.kind == "set":
            return []
        if self.kind in ("map", "record"):
            return {}
        if self.kind == "enum":
            return enum_values(self.name)[0]
        return ""


_PRIMS = {"string", "int", "float", "bool", "datetime", "void"}


@cache
def parse_type(text: str) -> XType:
    """Parse an XAPI type string as printed in xenapi.json."""
    text = text.strip()
    if text.startswith("(") and text.endswith(") map"):
        inner = text[1:-5]
        depth = 0
        for i in range(len(inner)):
            if inner[i] == "(":
                depth += 1
            elif inner[i] == ")":
                depth -= 1
            elif inner.startswith(" -> ", i) and depth == 0:
                return XType("map", elem=parse_type(inner[:i]), value=parse_type(inner[i + 4:]))
        raise ValueError(f"bad map type {text!r}")
    if text.endswith(" set"):
        return XType("set", elem=parse_type(text[:-4]))
    if text.endswith(" ref"):
        return XType("ref", name=text[:-4])
    if text.endswith(" record"):
        return XType("record", name=text[:-7])
    if text.startswith("enum "):
        return XType("enum", name=text[5:])
    if text in _PRIMS:
        return XType(text)
    # e.g. "an event batch", "blob ref"... treat as opaque string-ish value
    return XType("opaque", name=text)


@dataclass
class Param:
    name: str
    type: XType
    has_default: bool = False
    default: object = None


@dataclass
class Message:
    cls: str
    name: str
    params: list[Param]
    result: XType
    implicit: bool
    is_async: bool
    removed: bool
    errors: list[str] = field(default_factory=list)

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def takes_session(self) -> bool:
        return bool(self.params) and self.params[0].name == "session_id"


@dataclass
class Field:
    name: str
    type: XType
    qualifier: str
    has_default: bool
    default: object
    removed: bool = False

    def initial(self):
        value = copy.deepcopy(self.default) if self.has_default else self.type.zero()
        if self.type.kind == "datetime":
            from ..values import XDateTime
            return XDateTime(value)
        return value


@dataclass
class ClassDef:
    name: str
    fields: dict[str, Field]
    messages: dict[str, Message]

    @property
    def has_uuid(self) -> bool:
        return "uuid" in self.fields

    @property
    def has_name_label(self) -> bool:
        return "name_label" in self.fields

    def constructor_fields(self) -> list[Field]:
        """Fields a ``create`` struct may carry (RW or RO/constructor)."""
        return [f for f in self.fields.values() if f.qualifier in ("RW", "RO/constructor")]


@lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads(_MODEL_FILE.read_text())


def enum_values(name: str) -> list[str]:
    return _raw()["enums"][name]


def enums() -> dict[str, list[str]]:
    return _raw()["enums"]


def error_param_names(code: str) -> list[str]:
    """The parameters xapi gives with an error code (``SR_BACKEND_FAILURE_<n>``: SM's three)."""
    table = _raw()["error_params"]
    if code not in table and code.startswith("SR_BACKEND_FAILURE_"):
        code = "SR_BACKEND_FAILURE"
    return table.get(code, [])


@lru_cache(maxsize=1)
def classes() -> dict[str, ClassDef]:
    out: dict[str, ClassDef] = {}
    for cname, c in _raw()["classes"].items():
        fields = {
            fname: Field(fname, parse_type(f["type"]), f["qualifier"], "default" in f,
                         f.get("default"), f.get("removed", False))
            for fname, f in c["fields"].items()
        }
        msgs = {}
        for mname, m in c["messages"].items():
            params = [Param(p["name"], parse_type(p["type"]), "default" in p, p.get("default"))
                      for p in m["params"]]
            msgs[mname] = Message(cname, mname, params, parse_type(m["result"]), m["implicit"],
                                  m["async"], m["removed"], m["errors"])
        out[cname] = ClassDef(cname, fields, msgs)
    return out


@cache
def class_by_lower(name: str) -> str | None:
    """Map a case-insensitive class name (as event.from takes it) to its table name."""
    for c in classes():
        if c.lower() == name.lower():
            return c
    return None


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name))


# One-to-many relations that xapi keeps in step automatically (the ref field on
# the left, the set field on the right).  From ``all_relations`` in
# ocaml/idl/datamodel.ml (xen-api e2ee48d688), the one-to-many ones.
RELATIONS: list[tuple[str, str, str, str]] = [
    ("VM", "snapshot_of", "VM", "snapshots"),
    ("VDI", "snapshot_of", "VDI", "snapshots"),
    ("VM", "parent", "VM", "children"),
    ("task", "subtask_of", "task", "subtasks"),
    ("PBD", "host", "host", "PBDs"),
    ("PBD", "SR", "SR", "PBDs"),
    ("VBD", "VDI", "VDI", "VBDs"),
    ("crashdump", "VDI", "VDI", "crash_dumps"),
    ("VBD", "VM", "VM", "VBDs"),
    ("crashdump", "VM", "VM", "crash_dumps"),
    ("VIF", "VM", "VM", "VIFs"),
    ("VIF", "network", "network", "VIFs"),
    ("PIF", "host", "host", "PIFs"),
    ("PIF", "network", "network", "PIFs"),
    ("VDI", "SR", "SR", "VDIs"),
    ("VTPM", "VM", "VM", "VTPMs"),
    ("console", "VM", "VM", "consoles"),
    ("VM", "resident_on", "host", "resident_VMs"),
    ("host_cpu", "host", "host", "host_CPUs"),
    ("host_crashdump", "host", "host", "crashdumps"),
    ("VGPU", "VM", "VM", "VGPUs"),
    ("PCI", "host", "host", "PCIs"),
    ("PGPU", "host", "host", "PGPUs"),
    ("VUSB", "VM", "VM", "VUSBs"),
    ("PUSB", "host", "host", "PUSBs"),
    ("Feature", "host", "host", "features"),
    ("Certificate", "host", "host", "certificates"),
]
