"""HTTP(S) connections to a XAPI host with the operator's TLS policy.

One place decides how the driver trusts a host: the system CA store by
default, a CA file, a pinned SHA-256 thumbprint (for a host's own
self-signed certificate), or, only if the operator turns verification off,
nothing.  The XML-RPC transport handed to the ``XenAPI`` SDK and the plain
HTTP connections used for VDI import/export are both built here.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import xmlrpc.client
from dataclasses import dataclass
from urllib.parse import urlsplit


class CertificateMismatch(ssl.SSLError):
    """The host's certificate does not match the pinned thumbprint."""


@dataclass(frozen=True)
class TLSPolicy:
    """How to trust the host's certificate."""

    verify: bool = True
    ca_file: str | None = None
    thumbprint: str | None = None

    def context(self) -> ssl.SSLContext:
        if self.thumbprint or not self.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=self.ca_file)

    def normalized_thumbprint(self) -> str | None:
        if not self.thumbprint:
            return None
        return self.thumbprint.replace(":", "").strip().lower()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, thumbprint: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._thumbprint = thumbprint

    def connect(self) -> None:
        super().connect()
        if self._thumbprint:
            der = self.sock.getpeercert(binary_form=True) or b""
            seen = hashlib.sha256(der).hexdigest()
            if seen != self._thumbprint:
                self.close()
                raise CertificateMismatch(
                    f"certificate of {self.host} has SHA-256 thumbprint {seen}, "
                    "which is not the configured certificate_thumbprint")


def open_connection(url: str, policy: TLSPolicy, timeout: float | None) -> http.client.HTTPConnection:
    """A new (not yet connected) HTTP or HTTPS connection to ``url``'s host."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return _PinnedHTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                      context=policy.context(),
                                      thumbprint=policy.normalized_thumbprint())
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


class XmlRpcTransport(xmlrpc.client.Transport):
    """An xmlrpc transport with a socket timeout and the TLS policy, for the SDK."""

    def __init__(self, url: str, policy: TLSPolicy, timeout: float) -> None:
        super().__init__()
        self._url = url
        self._policy = policy
        self.timeout = timeout

    def make_connection(self, host):  # noqa: ANN001 - xmlrpc's signature
        if self._connection and host == self._connection[0]:
            conn = self._connection[1]
        else:
            _, self._extra_headers, _ = self.get_host_info(host)
            conn = open_connection(self._url, self._policy, self.timeout)
            self._connection = host, conn
        conn.timeout = self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return conn
