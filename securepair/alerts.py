"""TLS alert names, and what an OpenSSL failure says about the alert involved."""

from __future__ import annotations

#: RFC 8446 6 (and RFC 5246 7.2 for the older ones): code -> description.
ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# OpenSSL reasons for failures it answers with a specific alert.  Used when
# the alert itself is encrypted (TLS 1.3 after the ServerHello) and cannot be
# read back from the bytes we send.
_REASON_ALERTS: dict[str, str] = {
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": "bad_record_mac",
    "BAD_RECORD_MAC": "bad_record_mac",
    "WRONG_VERSION_NUMBER": "protocol_version",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "NO_SHARED_CIPHER": "handshake_failure",
    "NO_SHARED_GROUPS": "handshake_failure",
    "NO_SUITABLE_KEY_SHARE": "handshake_failure",
    "RECORD_OVERFLOW": "record_overflow",
    "ENCRYPTED_LENGTH_TOO_LONG": "record_overflow",
    "PACKET_LENGTH_TOO_LONG": "record_overflow",
    "DATA_LENGTH_TOO_LONG": "record_overflow",
    "UNEXPECTED_MESSAGE": "unexpected_message",
    "UNEXPECTED_RECORD": "unexpected_message",
    "UNEXPECTED_CCS_MESSAGE": "unexpected_message",
    "BAD_RECORD_TYPE": "unexpected_message",
    "LENGTH_MISMATCH": "decode_error",
    "BAD_PACKET_LENGTH": "decode_error",
    "BAD_LENGTH": "decode_error",
    "LENGTH_TOO_SHORT": "decode_error",
    "BAD_EXTENSION": "decode_error",
    "NO_RENEGOTIATION": "no_renegotiation",
    "NO_APPLICATION_PROTOCOL": "no_application_protocol",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "certificate_required",
    "CALLBACK_FAILED": "internal_error",
    "INTERNAL_ERROR": "internal_error",
    "INAPPROPRIATE_FALLBACK": "inappropriate_fallback",
}

# OpenSSL 4 names the alerts it receives TLS_ALERT_* (found by the tamper tests).
_RECEIVED_PREFIXES = (
    "SSLV3_ALERT_",
    "TLSV1_ALERT_",
    "TLSV13_ALERT_",
    "TLS_ALERT_",
    "TLSV1_UNRECOGNIZED_NAME",
)


def received_alert(reason: str | None) -> str | None:
    """The alert the peer sent, if OpenSSL's reason says it failed on one."""
    if not reason:
        return None
    if reason == "TLSV1_UNRECOGNIZED_NAME":
        return "unrecognized_name"
    for prefix in _RECEIVED_PREFIXES:
        if reason.startswith(prefix):
            return reason[len(prefix) :].lower()
    return None


def sent_alert_for_reason(reason: str | None) -> str | None:
    """The alert OpenSSL sends for a failure with this reason, if known."""
    if not reason:
        return None
    return _REASON_ALERTS.get(reason)


def plaintext_alert(data: bytes) -> tuple[str, bool] | None:
    """The (description, fatal) of the first plaintext alert record in
    ``data``, a stream of whole records; ``None`` if there is none."""
    pos = 0
    n = len(data)
    while pos + 5 <= n:
        ctype = data[pos]
        length = (data[pos + 3] << 8) | data[pos + 4]
        if ctype == 21 and length == 2 and pos + 7 <= n:
            level, code = data[pos + 5], data[pos + 6]
            return ALERT_NAMES.get(code, f"alert_{code}"), level == 2
        pos += 5 + length
    return None
