"""The session layer's TLS checks against certificates the tests make (a CA of their own).

A CA file trusts a host whose certificate it signed for the address the URL
names; an expired certificate, or one for another name, is refused with an
error that says so, as a self-signed one without a CA or pin is
(tests/test_session.py).  Certificates are made with ``cryptography``.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nova_xenapi import transport
from nova_xenapi.errors import HostConnectionError
from nova_xenapi.session import XenAPISession
from xapisim import SimConfig, Simulator, host_configs

PASSWORD = "tls-pw"
NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("nova-xenapi test CA"))
            .issuer_name(_name("nova-xenapi test CA")).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _host_pem(tmp: Path, ca, name: str, *, expired: bool = False) -> Path:
    """An RSA key (xapi serves RSA only) and certificate for ``name`` (an IP address or a DNS
    name), signed by ``ca``."""
    ca_key, ca_cert = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        san = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    if expired:
        start, end = NOW - datetime.timedelta(days=30), NOW - datetime.timedelta(days=1)
    else:
        start, end = NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=30)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    path = tmp / f"host-{name}-{expired}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = _ca()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    return ca, str(path)


def _sim(tmp_path: Path, pem: Path) -> Simulator:
    return Simulator(SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4)), tmp_path / "state",
                     tls=True, certificate=pem)


def _login(url: str, ca_file: str) -> XenAPISession:
    return XenAPISession(url, "root", PASSWORD, tls=transport.TLSPolicy(ca_file=ca_file))


def test_a_certificate_the_ca_signed_for_the_address_is_trusted(tmp_path, ca):
    (authority, ca_file) = ca
    with _sim(tmp_path, _host_pem(tmp_path, authority, "127.0.0.1")) as sim:
        session = _login(sim.url, ca_file)
        assert session.host_ref
        session.close()


def test_an_expired_certificate_is_refused_and_says_so(tmp_path, ca):
    (authority, ca_file) = ca
    with _sim(tmp_path, _host_pem(tmp_path, authority, "127.0.0.1", expired=True)) as sim:
        with pytest.raises(HostConnectionError, match="expired") as err:
            _login(sim.url, ca_file)
        assert PASSWORD not in str(err.value)


def test_a_certificate_for_another_name_is_refused_and_says_so(tmp_path, ca):
    (authority, ca_file) = ca
    with _sim(tmp_path, _host_pem(tmp_path, authority, "other-host.example")) as sim:
        with pytest.raises(HostConnectionError, match="(?i)mismatch|doesn't match|not valid for"):
            _login(sim.url, ca_file)


def test_a_ca_that_did_not_sign_the_certificate_is_no_trust(tmp_path, ca):
    (authority, _) = ca
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_ca()[1].public_bytes(serialization.Encoding.PEM))
    with _sim(tmp_path, _host_pem(tmp_path, authority, "127.0.0.1")) as sim:
        with pytest.raises(HostConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            _login(sim.url, str(other_ca))
