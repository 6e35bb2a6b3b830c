"""The XenStore guest agent: admin password, injected files and network reset, as the old driver did.

An image says it has the agent with the property ``xenapi_use_agent``
(Nova keeps it as ``image_xenapi_use_agent`` in the instance's system
metadata); without it ``[xenserver] use_agent_default`` decides, and
``disable_agent`` turns it off everywhere. Requests go through the dom0
plugin ``agent.py``, which writes them into the guest's XenStore and waits
for the agent's answer (``agent_timeout``). At boot the driver waits up to
``agent_version_timeout`` for the agent to answer, then injects the
request's files and ssh key, sets the admin password and asks for a
network reset (``agent_resetnetwork_timeout``).

The password travels encrypted with a key agreed by Diffie-Hellman in the
old driver's group, as ``openssl aes-128-cbc -a -nosalt -pass
pass:<shared>`` encrypts (key and IV from EVP_BytesToKey with SHA-256,
OpenSSL's default since 1.1.0; agents built against an OpenSSL older than
that derive with MD5 and will not read it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nova import exception
from oslo_log import log as logging
from oslo_utils import strutils

from nova_xenapi import conf as xconf
from nova_xenapi import plugins
from nova_xenapi.errors import XenAPIError
from nova_xenapi.session import XenAPISession

CONF = xconf.CONF
LOG = logging.getLogger(__name__)
USE_AGENT_KEY = "image_xenapi_use_agent"
PRIME = 162259276829213363391578010288127
BASE = 5


class AgentError(exception.NovaException):
    msg_fmt = "The guest agent of %(instance)s failed %(method)s: %(reason)s"


class AgentTimeout(AgentError):
    msg_fmt = "The guest agent of %(instance)s did not answer %(method)s in %(seconds)s s"


def should_use(instance: Any) -> bool:
    """Whether the instance's image has the agent (its property, else the default)."""
    if CONF.xenserver.disable_agent:
        return False
    value = (instance.system_metadata or {}).get(USE_AGENT_KEY)
    if value is None:
        return CONF.xenserver.use_agent_default
    try:
        return strutils.bool_from_string(value, strict=True)
    except ValueError:
        LOG.warning("Image property xenapi_use_agent=%r is not a boolean; using the default",
                    value, instance=instance)
        return CONF.xenserver.use_agent_default


class SimpleDH:
    """Diffie-Hellman in the old driver's group, and the agent's cipher on the shared number."""

    def __init__(self) -> None:
        self._private = secrets.randbits(80)
        self.public = pow(BASE, self._private, PRIME)
        self._shared: int | None = None

    def agree(self, other: int) -> None:
        if not 1 < other < PRIME:
            raise ValueError("the agent's public number is outside the group")
        self._shared = pow(other, self._private, PRIME)

    def encrypt(self, text: str) -> str:
        secret = str(self._shared).encode()
        material, block = b"", b""
        while len(material) < 32:  # EVP_BytesToKey(sha256, no salt, one round)
            block = hashlib.sha256(block + secret).digest()
            material += block
        enc = Cipher(algorithms.AES(material[:16]), modes.CBC(material[16:32])).encryptor()
        pad = padding.PKCS7(128).padder()
        data = pad.update(text.encode()) + pad.finalize()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode()


class GuestAgent:
    def __init__(self, session: XenAPISession, instance: Any, vm_ref: str) -> None:
        self.session, self.instance, self.vm_ref = session, instance, vm_ref

    def _call(self, method: str, args: dict[str, str] | None = None,
              timeout: int | None = None, success: str = "0") -> str:
        timeout = timeout or CONF.xenserver.agent_timeout
        dom_id = self.session.call_xenapi("VM.get_domid", self.vm_ref)
        if int(dom_id) <= 0:
            raise exception.InstanceNotRunning(instance_id=self.instance.uuid)
        call_args = {"id": str(uuid.uuid4()), "dom_id": str(dom_id), "timeout": str(timeout),
                     **(args or {})}
        try:
            raw = plugins.call(self.session, "agent.py", method, call_args)
        except plugins.PluginsMissing as e:
            raise AgentError(instance=self.instance.name, method=method, reason=str(e)) from None
        except XenAPIError as e:
            # xapi wraps the plugin's own failure in XENAPI_PLUGIN_FAILURE
            code = e.params[0] if e.code == "XENAPI_PLUGIN_FAILURE" and e.params else e.code
            if code == "AGENT_TIMEOUT":
                raise AgentTimeout(instance=self.instance.name, method=method,
                                   seconds=timeout) from None
            raise AgentError(instance=self.instance.name, method=method, reason=code) from None
        try:
            answer = json.loads(raw)
            code, message = str(answer["returncode"]), str(answer.get("message", ""))
        except (ValueError, KeyError, TypeError):
            raise AgentError(instance=self.instance.name, method=method,
                             reason="an answer that is not the agent's") from None
        if code != success:
            reason = "not implemented by this agent" if code == "404" else f"returncode {code}"
            raise AgentError(instance=self.instance.name, method=method, reason=reason)
        return message.replace("\\r\\n", "")  # some old Windows agents append an escaped CRLF

    def version(self) -> str:
        """The agent's version, waiting up to agent_version_timeout for it to come up."""
        deadline = time.monotonic() + CONF.xenserver.agent_version_timeout
        while True:
            try:
                return self._call("version")
            except AgentTimeout:
                if time.monotonic() >= deadline:
                    raise

    def set_admin_password(self, password: str) -> None:
        dh = SimpleDH()
        theirs = self._call("key_init", {"pub": str(dh.public)}, success="D0")
        try:
            dh.agree(int(theirs))
        except ValueError:
            raise AgentError(instance=self.instance.name, method="key_init",
                             reason="no usable public number") from None
        # old agents want the trailing newline
        self._call("password", {"enc_pass": dh.encrypt(password + "\n")})

    def inject_file(self, path: str, contents: bytes) -> None:
        self._call("inject_file", {"b64_path": base64.b64encode(path.encode()).decode(),
                                   "b64_contents": base64.b64encode(contents).decode()})

    def resetnetwork(self) -> None:
        self._call("resetnetwork", timeout=CONF.xenserver.agent_resetnetwork_timeout)


def configure_at_boot(session: XenAPISession, instance: Any, vm_ref: str,
                      injected_files: Any, admin_password: str | None) -> None:
    """What the old driver did once the VM ran: the agent's files, ssh key, password, network."""
    agent = GuestAgent(session, instance, vm_ref)
    LOG.debug("Guest agent %s answered", agent.version(), instance=instance)
    key = instance.key_data
    if key and (instance.os_type or "linux") != "windows":
        agent.inject_file("/root/.ssh/authorized_keys",
                          f"\n# The following ssh key was injected by Nova\n{key.strip()}\n".encode())
    for path, contents in injected_files or ():
        agent.inject_file(path, contents if isinstance(contents, bytes) else contents.encode())
    if admin_password:
        agent.set_admin_password(admin_password)
    agent.resetnetwork()
