"""The exception hierarchy, shared by every layer (this module imports nothing).

Three families, after h11's split between "you misused the API" and "the peer
misbehaved":

* :class:`LocalProtocolError` -- the application did something the API does
  not allow (reading details before the handshake, writing after close, an
  invalid configuration).  Fix the calling code.
* :class:`RemoteProtocolError` -- the bytes the peer sent are wrong: not TLS
  at all, a malformed record, a bad ClientHello, a ragged EOF when a clean
  close was required.  The connection is unusable; another peer may be fine.
* :class:`TLSError` -- the TLS library refused the connection.  It keeps the
  OpenSSL ``library`` and ``reason`` codes and, where there is one, the TLS
  ``alert`` that was sent or received.  Certificate problems are the subclass
  :class:`CertificateVerificationError`, carrying Node's error code.

Every error derives from :class:`SecurePairError`.
"""

from __future__ import annotations

__all__ = [
    "SecurePairError",
    "LocalProtocolError",
    "ConfigError",
    "UnsupportedFeatureError",
    "HandshakeNotCompleteError",
    "BufferFullError",
    "RemoteProtocolError",
    "NotTLSError",
    "RecordError",
    "UnknownContentTypeError",
    "BadRecordVersionError",
    "RecordOverflowError",
    "EmptyRecordError",
    "ClientHelloError",
    "RaggedEOFError",
    "TLSError",
    "TLSAlertReceivedError",
    "CertificateVerificationError",
]


class SecurePairError(Exception):
    """Base class of every error this package raises on purpose."""


# --------------------------------------------------------------------------
# Local: the API was misused.


class LocalProtocolError(SecurePairError):
    """The application used the API in a way it does not allow."""


class ConfigError(LocalProtocolError, ValueError):
    """A configuration option is invalid; the message names the option."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        #: The option that is wrong, as spelled in :class:`TLSConfig`.
        self.option = option
        #: What is wrong with it.
        self.problem = problem


class UnsupportedFeatureError(ConfigError):
    """The chosen backend cannot provide an asked-for feature."""


class HandshakeNotCompleteError(LocalProtocolError):
    """A connection detail (certificate, cipher, ALPN...) was asked for before
    the handshake completed; the answer does not exist yet."""


class BufferFullError(LocalProtocolError):
    """A bounded buffer is full: stop writing until the other side drains it."""

    def __init__(self, message: str, *, buffer: str, limit: int) -> None:
        super().__init__(message)
        #: Which buffer: ``"cleartext"`` or ``"encrypted"``.
        self.buffer = buffer
        #: Its limit in bytes.
        self.limit = limit


# --------------------------------------------------------------------------
# Remote: the peer misbehaved.


class RemoteProtocolError(SecurePairError):
    """The peer sent bytes that break the protocol."""


class NotTLSError(RemoteProtocolError):
    """The peer is not speaking TLS.

    The message says what it looks like and shows the first bytes, for example
    ``peer sent plaintext, looks like HTTP: b'GET / HTTP/1.1\\r\\n'``.
    """

    def __init__(self, message: str, *, kind: str, first_bytes: bytes) -> None:
        super().__init__(message)
        #: What the bytes look like: ``"http-request"``, ``"smtp"``,
        #: ``"sslv2"``, ``"proxy-v1"``, ``"text"``, ``"unknown"``...
        self.kind = kind
        #: The first bytes the peer sent (at most 32).
        self.first_bytes = first_bytes


class RecordError(RemoteProtocolError, ValueError):
    """A TLS record header is invalid.

    ``offset`` is where the bad header starts in the scanned buffer; the
    records before it are valid and can be recovered by scanning
    ``buf[:offset]``.
    """

    #: Stable short name of the error; equal between the C and Python framer.
    code = "record"

    def __init__(self, message: str, *, offset: int, value: int) -> None:
        super().__init__(message)
        #: Offset of the offending record header in the scanned buffer.
        self.offset = offset
        #: The offending value (content type, version or length).
        self.value = value


class UnknownContentTypeError(RecordError):
    """The record's content type is not one TLS defines (20-24)."""

    code = "unknown_content_type"


class BadRecordVersionError(RecordError):
    """The record's legacy version does not have major version 3."""

    code = "bad_version"


class RecordOverflowError(RecordError):
    """The record is longer than TLS allows (the ``record_overflow`` alert)."""

    code = "record_overflow"


class EmptyRecordError(RecordError):
    """A zero-length handshake, alert or change_cipher_spec record, which TLS
    forbids."""

    code = "empty_record"


class ClientHelloError(RemoteProtocolError, ValueError):
    """The first handshake message is not a well-formed ClientHello."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        #: Stable short name of the problem, equal between C and Python.
        self.code = code


class RaggedEOFError(RemoteProtocolError):
    """The peer closed the connection without sending close_notify.

    A truncation attack looks exactly like this, so it is an error unless the
    configuration accepts ragged EOFs (as HTTPS clients do).
    """


# --------------------------------------------------------------------------
# TLS: the TLS library refused.


class TLSError(SecurePairError):
    """The TLS library failed the connection.

    The alert (if any) has already been made available on the encrypted side
    when this is raised, so flushing ``pair.encrypted`` tells the peer why.
    """

    def __init__(
        self,
        message: str,
        *,
        library: str | None = None,
        reason: str | None = None,
        alert: str | None = None,
        alert_sent: bool = False,
    ) -> None:
        super().__init__(message)
        #: OpenSSL library name, e.g. ``"SSL routines"``.
        self.library = library
        #: OpenSSL reason, e.g. ``"WRONG_VERSION_NUMBER"``.
        self.reason = reason
        #: The TLS alert description involved, e.g. ``"bad_record_mac"``.
        self.alert = alert
        #: True if we sent the alert, False if the peer sent it (or none).
        self.alert_sent = alert_sent


class TLSAlertReceivedError(TLSError, RemoteProtocolError):
    """The peer sent a fatal alert."""


class CertificateVerificationError(TLSError):
    """The peer's certificate did not verify.

    ``code`` is Node's name for the failure (``DEPTH_ZERO_SELF_SIGNED_CERT``,
    ``CERT_HAS_EXPIRED``, ``ERR_TLS_CERT_ALTNAME_INVALID``...).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        verify_code: int | None = None,
        library: str | None = None,
        reason: str | None = None,
        alert: str | None = None,
        alert_sent: bool = False,
    ) -> None:
        super().__init__(
            message, library=library, reason=reason, alert=alert, alert_sent=alert_sent
        )
        #: Node's error code.
        self.code = code
        #: OpenSSL's X509_V_ERR_* number, where known.
        self.verify_code = verify_code
