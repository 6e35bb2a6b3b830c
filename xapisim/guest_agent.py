"""The simulated guest agent: what nova-agent does inside a guest whose image has it.

A guest runs the agent when its boot disk's first block holds
``AGENT_MARKER`` (the image "has the agent installed"; tests build such
images). It serves the XenStore protocol of the old XenServer driver's
agent: the host writes a request ``{"name": ..., "value": ...}`` (JSON) at
``/local/domain/<domid>/data/host/<id>``, and the agent answers
``{"returncode": ..., "message": ...}`` at ``.../data/guest/<id>`` and
removes the request. Requests:

- ``version``: the agent's version (``VERSION``);
- ``keyinit``: Diffie-Hellman with the host's public number; answers ``D0``
  and its own public number;
- ``password``: the new password, encrypted with the agreed key
  (``openssl aes-128-cbc -a -nosalt -pass pass:<shared>``, whose key and IV
  come from EVP_BytesToKey with SHA-256, OpenSSL's default digest since
  1.1.0); the agent decrypts it, as a real one sets it on the account;
- ``inject_file``: a base64 path and contents, kept as the guest's file;
- ``resetnetwork``: reads ``vm-data/networking`` (what xapi copied there
  from the VM's ``xenstore_data``) and counts the reset;
- ``agentupdate``: answers ``0`` (no download is done);
- anything else: ``returncode`` ``404`` (not implemented).

What each guest received is kept in its ``Guest`` (``Agents.guest(vm)``) for
tests to read back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .dom0lib import xenstore_sim

AGENT_MARKER = b"xapisim-guest-agent"
VERSION = "1.0.0"
PRIME = 162259276829213363391578010288127  # the old driver's SimpleDH group
BASE = 5
POLL = 0.05


def evp_key_iv(secret: bytes, key_len: int = 16, iv_len: int = 16,
               digest: str = "sha256") -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey without salt, one round: ``openssl enc -pass pass:...``."""
    out, block = b"", b""
    while len(out) < key_len + iv_len:
        block = hashlib.new(digest, block + secret).digest()
        out += block
    return out[:key_len], out[key_len:key_len + iv_len]


def decrypt(shared: int, text: str) -> str:
    key, iv = evp_key_iv(str(shared).encode())
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    data = d.update(base64.b64decode(text)) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return (u.update(data) + u.finalize()).decode()


@dataclass
class Guest:
    """What a guest's agent received."""

    password: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    network_resets: int = 0
    networking: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _private: int = 0
    _shared: int | None = None


class Agents:
    """The agents of every running guest that has one, served by one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._domains: dict[tuple[str, int], tuple[str, Path]] = {}  # (host, domid) -> vm, dom0
        self._guests: dict[str, Guest] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def guest(self, vm: str) -> Guest | None:
        return self._guests.get(vm)

    def started(self, vm: str, host: str, domid: int, dom0: Path) -> None:
        with self._lock:
            self._domains[(host, domid)] = (vm, dom0)
            self._guests.setdefault(vm, Guest())
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, daemon=True,
                                                name="xapisim-guest-agents")
                self._thread.start()

    def stopped(self, host: str, domid: int) -> None:
        with self._lock:
            self._domains.pop((host, domid), None)

    def forget(self, vm: str) -> None:
        self._guests.pop(vm, None)

    def close(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        while not self._stop.wait(POLL):
            with self._lock:
                domains = dict(self._domains)
            for (_, domid), (vm, dom0) in domains.items():
                root = str(dom0 / "run/xapisim-xenstore")
                base = f"/local/domain/{domid}/data"
                for request_id in xenstore_sim.children(f"{base}/host", root):
                    try:
                        self._answer(vm, root, base, request_id)
                    except (OSError, xenstore_sim.XenStoreError):
                        pass  # the host took its request back meanwhile

    def _answer(self, vm: str, root: str, base: str, request_id: str) -> None:
        raw = xenstore_sim.read(f"{base}/host/{request_id}", root)
        guest = self._guests.setdefault(vm, Guest())
        try:
            request = json.loads(raw)
            name, value = request["name"], request.get("value")
            guest.requests.append(name)
            code, message = self._handle(guest, root, base, name, value)
        except (ValueError, KeyError, TypeError) as e:
            code, message = "500", f"bad request: {e}"
        xenstore_sim.write(f"{base}/guest/{request_id}",
                           json.dumps({"returncode": code, "message": message}), root)
        xenstore_sim.remove(f"{base}/host/{request_id}", root)

    def _handle(self, guest: Guest, root: str, base: str, name: str, value) -> tuple[str, str]:
        if name == "version":
            return "0", VERSION
        if name == "keyinit":
            guest._private = secrets.randbits(80)
            guest._shared = pow(int(value), guest._private, PRIME)
            return "D0", str(pow(BASE, guest._private, PRIME))
        if name == "password":
            if guest._shared is None:
                return "500", "no key agreed (keyinit first)"
            guest.password = decrypt(guest._shared, value).rstrip("\n")
            return "0", ""
        if name == "inject_file":
            args = json.loads(value) if isinstance(value, str) else value
            path = base64.b64decode(args["b64_path"]).decode()
            guest.files[path] = base64.b64decode(args["b64_contents"])
            return "0", ""
        if name == "resetnetwork":
            vm_data = base.rsplit("/data", 1)[0] + "/vm-data/networking"
            guest.networking = {k: xenstore_sim.read(f"{vm_data}/{k}", root)
                                for k in xenstore_sim.children(vm_data, root)}
            guest.network_resets += 1
            return "0", ""
        if name == "agentupdate":
            return "0", ""
        return "404", f"{name}: not implemented"


def boot_disk_has_agent(backend, vm: str) -> bool:
    """Whether the VM's bootable disk starts with ``AGENT_MARKER`` (store locked)."""
    from .vhd import DynamicVhd
    store = backend.store
    for vbd in store.get("VM", vm)["VBDs"]:
        v = store.get("VBD", vbd)
        if not v["bootable"] or v["empty"] or not store.exists("VDI", v["VDI"]):
            continue
        vdi = store.get("VDI", v["VDI"])
        sr = store.get("SR", vdi["SR"])
        disks = backend.disks
        if disks.is_lun_sr(sr["type"]):
            return False
        path = disks.path(sr["uuid"], sr["type"], vdi["uuid"])
        try:
            if disks.fmt_of(sr["uuid"], sr["type"], vdi["uuid"]) == "vpc":
                with DynamicVhd(str(path)) as d:
                    head = (d.block_data(0) or b"")[:4096]
            else:
                with open(path, "rb") as f:
                    head = f.read(4096)
        except Exception:  # noqa: BLE001 - an unreadable disk boots no agent
            return False
        return AGENT_MARKER in head
    return False


def write_vm_data(dom0: Path, domid: int, xenstore_data: dict[str, str]) -> None:
    """What xapi does at boot: the VM's ``xenstore_data`` under its domain's path."""
    root = str(dom0 / "run/xapisim-xenstore")
    for key, value in xenstore_data.items():
        try:
            xenstore_sim.write(f"/local/domain/{domid}/{key}", value, root)
        except xenstore_sim.XenStoreError:
            pass  # xapi skips keys xenstored would refuse


def clear_domain(dom0: Path, domid: int) -> None:
    """The domain's XenStore tree goes with the domain."""
    xenstore_sim.remove(f"/local/domain/{domid}", str(dom0 / "run/xapisim-xenstore"))
