"""Peer certificates as Node's ``getPeerCertificate()`` dicts.

Node users read ``cert.subject.CN``, ``cert.subjectaltname``,
``cert.fingerprint256`` and ``cert.valid_to``; the same keys, with the same
value formats, come out of :func:`node_certificate`.  Built from the DER with
``cryptography``, so it works whatever the backend and even when
verification was off.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

#: Node's short names for the attributes of a distinguished name.
_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
}

_NIST_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ASN1_CURVES = {"secp256r1": "prime256v1"}

PeerCertificate = dict[str, Any]


def _name(name: x509.Name) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for attr in name:
        key = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
        value = attr.value if isinstance(attr.value, str) else attr.value.hex()
        previous = out.get(key)
        if previous is None:
            out[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            out[key] = [previous, value]
    return out


def _node_time(when: datetime.datetime) -> str:
    # Node (OpenSSL's ASN1_TIME_print): "Sep  3 20:10:13 2024 GMT".
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S %Y} GMT"


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def _subject_alt_name(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    parts: list[str] = []
    for entry in san:
        if isinstance(entry, x509.DNSName):
            parts.append(f"DNS:{entry.value}")
        elif isinstance(entry, x509.IPAddress):
            parts.append(f"IP Address:{entry.value}")
        elif isinstance(entry, x509.RFC822Name):
            parts.append(f"email:{entry.value}")
        elif isinstance(entry, x509.UniformResourceIdentifier):
            parts.append(f"URI:{entry.value}")
        else:
            parts.append(f"othername:{entry.value!r}")
    return ", ".join(parts)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def node_certificate(der: bytes) -> PeerCertificate:
    """Describe one DER certificate the way Node's ``getPeerCertificate()`` does.

    Keys: ``subject``, ``issuer`` (dicts of short attribute names),
    ``subjectaltname`` (``"DNS:localhost, IP Address:127.0.0.1"``), ``ca``,
    ``bits`` and key details (``modulus``/``exponent`` for RSA,
    ``asn1Curve``/``nistCurve`` for EC), ``pubkey`` (DER SubjectPublicKeyInfo),
    ``valid_from``/``valid_to`` (``"Sep  3 20:10:13 2024 GMT"``),
    ``fingerprint`` (SHA-1), ``fingerprint256``, ``fingerprint512``,
    ``ext_key_usage`` (dotted OIDs), ``serialNumber`` (upper-case hex) and
    ``raw`` (the DER).
    """
    cert = x509.load_der_x509_certificate(der)
    info: PeerCertificate = {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "ca": _is_ca(cert),
    }
    san = _subject_alt_name(cert)
    if san is not None:
        info["subjectaltname"] = san
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        info["bits"] = key.key_size
        info["modulus"] = f"{numbers.n:X}"
        info["exponent"] = f"0x{numbers.e:x}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        info["bits"] = key.curve.key_size
        curve = key.curve.name
        info["asn1Curve"] = _ASN1_CURVES.get(curve, curve)
        if curve in _NIST_CURVES:
            info["nistCurve"] = _NIST_CURVES[curve]
    elif isinstance(key, ed25519.Ed25519PublicKey):
        info["bits"] = 253
    elif isinstance(key, ed448.Ed448PublicKey):
        info["bits"] = 456
    info["pubkey"] = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info["valid_from"] = _node_time(cert.not_valid_before_utc)
    info["valid_to"] = _node_time(cert.not_valid_after_utc)
    info["fingerprint"] = _colon_hex(cert.fingerprint(hashes.SHA1()))
    info["fingerprint256"] = _colon_hex(cert.fingerprint(hashes.SHA256()))
    info["fingerprint512"] = _colon_hex(cert.fingerprint(hashes.SHA512()))
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        info["ext_key_usage"] = [oid.dotted_string for oid in usage]
    except x509.ExtensionNotFound:
        pass
    serial = f"{cert.serial_number:X}"
    info["serialNumber"] = serial if len(serial) % 2 == 0 else "0" + serial
    info["raw"] = der
    return info


def node_certificate_chain(chain: Sequence[bytes]) -> PeerCertificate:
    """The leaf of ``chain`` with ``issuerCertificate`` links, as Node's
    ``getPeerCertificate(true)``.  A self-signed top links to itself."""
    certs = [node_certificate(der) for der in chain]
    for child, parent in itertools.pairwise(certs):
        child["issuerCertificate"] = parent
    if certs:
        top = certs[-1]
        if top["issuer"] == top["subject"]:
            top["issuerCertificate"] = top
    return certs[0] if certs else {}
