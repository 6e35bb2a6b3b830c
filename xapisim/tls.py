"""The host certificate: a self-signed RSA 2048 one made on first start, or one given.

Uses ``cryptography`` to make the key and certificate (what xapi's
``gencert`` does on a fresh host) and the standard ``ssl`` module to serve
with xapi's policy (TLS 1.2, ECDHE-RSA AES-GCM ciphers).
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path


def ensure_certificate(path: Path, addresses: list[str], hostname: str = "xapisim") -> Path:
    if path.exists():
        return path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    alt = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o600)
    return path


def server_context(pem: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
    ctx.load_cert_chain(str(pem))
    return ctx


def certificate_pem(pem: Path) -> str:
    text = pem.read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    return text[start:]
