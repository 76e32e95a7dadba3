"""OpenSSL certificate verification results, named as Node names them.

Node reports a failed verification as ``authorizationError`` with OpenSSL's
X509_V_ERR name minus the prefix (``CERT_HAS_EXPIRED``), and a host name that
the certificate does not cover as ``ERR_TLS_CERT_ALTNAME_INVALID``.  Users
port code and tests from Node, so the same strings come out here.
"""

from __future__ import annotations

#: X509_V_ERR_* number -> Node's code.
NODE_CODES: dict[int, str] = {
    2: "UNABLE_TO_GET_ISSUER_CERT",
    3: "UNABLE_TO_GET_CRL",
    4: "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
    5: "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
    6: "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
    7: "CERT_SIGNATURE_FAILURE",
    8: "CRL_SIGNATURE_FAILURE",
    9: "CERT_NOT_YET_VALID",
    10: "CERT_HAS_EXPIRED",
    11: "CRL_NOT_YET_VALID",
    12: "CRL_HAS_EXPIRED",
    13: "ERROR_IN_CERT_NOT_BEFORE_FIELD",
    14: "ERROR_IN_CERT_NOT_AFTER_FIELD",
    15: "ERROR_IN_CRL_LAST_UPDATE_FIELD",
    16: "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
    17: "OUT_OF_MEM",
    18: "DEPTH_ZERO_SELF_SIGNED_CERT",
    19: "SELF_SIGNED_CERT_IN_CHAIN",
    20: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    21: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    22: "CERT_CHAIN_TOO_LONG",
    23: "CERT_REVOKED",
    24: "INVALID_CA",
    25: "PATH_LENGTH_EXCEEDED",
    26: "INVALID_PURPOSE",
    27: "CERT_UNTRUSTED",
    28: "CERT_REJECTED",
    62: "ERR_TLS_CERT_ALTNAME_INVALID",  # X509_V_ERR_HOSTNAME_MISMATCH
    63: "ERR_TLS_CERT_ALTNAME_INVALID",  # X509_V_ERR_EMAIL_MISMATCH
    64: "ERR_TLS_CERT_ALTNAME_INVALID",  # X509_V_ERR_IP_ADDRESS_MISMATCH
}

#: The alert OpenSSL sends for a verification failure (its x509table in
#: ssl/statem/statem_lib.c); anything else gets certificate_unknown.
VERIFY_ALERTS: dict[int, str] = {
    2: "unknown_ca",
    3: "unknown_ca",
    4: "bad_certificate",
    5: "bad_certificate",
    6: "bad_certificate",
    7: "decrypt_error",
    8: "decrypt_error",
    9: "bad_certificate",
    10: "certificate_expired",
    11: "bad_certificate",
    12: "certificate_expired",
    13: "bad_certificate",
    14: "bad_certificate",
    15: "bad_certificate",
    16: "bad_certificate",
    17: "internal_error",
    18: "unknown_ca",
    19: "unknown_ca",
    20: "unknown_ca",
    21: "unknown_ca",
    22: "unknown_ca",
    23: "certificate_revoked",
    24: "unknown_ca",
    25: "unknown_ca",
    26: "unsupported_certificate",
    27: "bad_certificate",
    28: "bad_certificate",
    62: "bad_certificate",
    63: "bad_certificate",
    64: "bad_certificate",
}

#: Reported as ``authorization_error`` when verification was turned off on
#: purpose (``insecure_no_verify=True``); not an OpenSSL code.
VERIFICATION_DISABLED = "VERIFICATION_DISABLED"


def node_code(verify_code: int) -> str:
    """Node's name for an X509_V_ERR number (``"X509_V_ERR_<n>"`` if unknown)."""
    return NODE_CODES.get(verify_code, f"X509_V_ERR_{verify_code}")
