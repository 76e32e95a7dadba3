"""Certificates and keys made with ``cryptography``: a small CA, leaf
certificates it signs, and self-signed server certificates.

What the classic ``openssl genrsa 2048`` + ``openssl req -new -x509 -nodes
-days 3650`` recipe does, plus what that recipe forgets: a subjectAltName
(clients have ignored the CN since RFC 6125), the key usages a modern
verifier checks, and a serial number from a CSPRNG.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, both PEM."""

    #: The certificate, PEM.
    cert_pem: bytes
    #: The private key, PEM (PKCS#8, unencrypted).
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)


def new_key(key_type: str = "ecdsa") -> PrivateKey:
    """A new private key: ``"rsa"`` (2048 bits) or ``"ecdsa"`` (P-256)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type {key_type!r} is not 'rsa' or 'ecdsa'")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _validity(
    days: int, not_before: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    start = not_before or (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5))
    return start, start + datetime.timedelta(days=days)


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


class CertificateAuthority:
    """A CA that signs server and client certificates."""

    def __init__(
        self,
        name: str = "securepair test CA",
        *,
        key_type: str = "ecdsa",
        days: int = 3650,
    ) -> None:
        self.key = new_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start, end = _validity(days, None)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(_ski(self.key), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM: what clients trust."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA key, PEM."""
        return _key_pem(self.key)

    def issue(
        self,
        hosts: Sequence[str] = ("localhost",),
        *,
        common_name: str | None = None,
        client: bool = False,
        key_type: str = "ecdsa",
        days: int = 825,
        not_before: datetime.datetime | None = None,
    ) -> Issued:
        """A leaf certificate for ``hosts`` (DNS names or IP addresses),
        for servers, or for clients with ``client=True``."""
        key = new_key(key_type)
        name = common_name or (hosts[0] if hosts else "client")
        start, end = _validity(days, not_before)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(_ski(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def self_signed(
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    *,
    key_type: str = "rsa",
    days: int = 3650,
    common_name: str | None = None,
) -> Issued:
    """A self-signed server certificate, as ``openssl req -x509`` makes, with
    a subjectAltName for ``hosts``.  Clients pin it by trusting the
    certificate itself (``TLSConfig(ca=cert_pem)``)."""
    key = new_key(key_type)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name or (hosts[0] if hosts else "server"))]
    )
    start, end = _validity(days, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(end)
        # CA:TRUE lets OpenSSL accept the certificate as its own trust
        # anchor when a client pins it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_ski(key), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
