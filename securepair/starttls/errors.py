"""The errors of the STARTTLS negotiators.

They join the package's two families (:mod:`securepair.errors`):

* the peer's fault -- :class:`~securepair.errors.RemoteProtocolError`:

  - :class:`StartTLSRefusedError`: the peer answered the request for TLS
    with a refusal (SMTP ``454``, POP3 ``-ERR``, IMAP ``NO``/``BAD``,
    PostgreSQL ``N``, XMPP ``<failure/>``, an LDAP result code...), or did
    not offer TLS at all (:class:`StartTLSNotOfferedError`).  A client raises
    it unless it was made with ``allow_plaintext=True``, in which case the
    refusal is the :class:`~securepair.starttls.events.TLSRefused` event
    instead.  Never a silent fallback.
  - :class:`StartTLSProtocolError`: the bytes break the protocol: a
    malformed line, an unexpected reply, bad BER, bad XML.  Its subclasses
    are the cases a caller may want to tell apart:
    :class:`InjectionError` (bytes where the protocol allows none, the
    STARTTLS injection attacks), :class:`LimitExceededError` (a line or a
    buffer over its limit) and :class:`PeerClosedError` (the peer ended the
    conversation: EOF, ``421``, ``* BYE``, a stream error...).

* the caller's fault -- :class:`~securepair.errors.LocalProtocolError`:
  :class:`StartTLSUsageError` (``start_tls()`` before the switch point,
  ``reply()`` with no command waiting, feeding a finished negotiator...).

Every error here is also a :class:`StartTLSError`, so ``except
StartTLSError`` catches exactly what the negotiators raise on purpose.
After a remote error the negotiator is in the ERROR state for good, and the
connection must be closed: whatever the negotiator still has in
``data_to_send()`` (an error reply for the peer) may be sent first.
"""

from __future__ import annotations

from ..errors import LocalProtocolError, RemoteProtocolError, SecurePairError

__all__ = [
    "StartTLSError",
    "StartTLSRefusedError",
    "StartTLSNotOfferedError",
    "StartTLSProtocolError",
    "InjectionError",
    "LimitExceededError",
    "PeerClosedError",
    "StartTLSUsageError",
]

#: How many bytes of the offending input an error keeps and shows.
EXCERPT = 64


def excerpt(data: bytes | bytearray | memoryview) -> bytes:
    """The first :data:`EXCERPT` bytes of ``data``, as ``bytes``."""
    return bytes(data[:EXCERPT])


class StartTLSError(SecurePairError):
    """Base class of every error a STARTTLS negotiator raises on purpose."""

    def __init__(self, message: str, *, protocol: str) -> None:
        super().__init__(message)
        #: The protocol's short name: ``"smtp"``, ``"imap"``, ``"ldap"``...
        self.protocol = protocol


class StartTLSRefusedError(StartTLSError, RemoteProtocolError):
    """The peer refused to start TLS.

    Raised by a client made without ``allow_plaintext=True``; the connection
    is still plaintext and must not be used for anything that needed TLS.
    """

    def __init__(self, message: str, *, protocol: str, response: bytes) -> None:
        super().__init__(message, protocol=protocol)
        #: The peer's refusal as it came on the wire (at most 64 bytes of it
        #: for long replies; ``b""`` when TLS was simply not offered).
        self.response = response


class StartTLSNotOfferedError(StartTLSRefusedError):
    """The peer does not offer TLS: STARTTLS is missing from its capability
    list, stream features or handshake flags, or it does not know the
    command.  A subclass of :class:`StartTLSRefusedError`."""


class StartTLSProtocolError(StartTLSError, RemoteProtocolError):
    """The peer's bytes break the protocol's plaintext phase."""

    def __init__(self, message: str, *, protocol: str, data: bytes = b"") -> None:
        super().__init__(message, protocol=protocol)
        #: The offending bytes (at most 64).
        self.data = excerpt(data)


class InjectionError(StartTLSProtocolError):
    """Bytes arrived where the protocol allows none: the STARTTLS injection
    attacks (Postfix CVE-2011-0411, libpq CVE-2021-23222, the 2021 "Why TLS
    is better without STARTTLS" study).

    On a client: bytes after the server's go-ahead and before our
    ClientHello (the server must wait for it), or a reply that came before
    the command it answers was sent.  On a server made with
    ``PipelinePolicy.ABORT``: bytes after the STARTTLS command.  The
    connection must be closed; the bytes were never interpreted.
    """

    def __init__(self, message: str, *, protocol: str, injected: bytes) -> None:
        super().__init__(message, protocol=protocol, data=injected)
        #: The first injected bytes (at most 64).
        self.injected = excerpt(injected)


class LimitExceededError(StartTLSProtocolError):
    """A line, a response or the receive buffer went over its limit.

    The limits keep a negotiator's memory bounded whatever the peer sends;
    they are constructor arguments (``max_line_length``, ``max_buffer_size``).
    """

    def __init__(self, message: str, *, protocol: str, limit: int, data: bytes = b"") -> None:
        super().__init__(message, protocol=protocol, data=data)
        #: The limit, in bytes.
        self.limit = limit


class PeerClosedError(StartTLSProtocolError):
    """The peer ended the conversation before TLS started: the connection
    closed (EOF), or the peer said it is closing (SMTP ``421``, IMAP
    ``* BYE``, an XMPP stream error, an LDAP notice of disconnection...)."""

    def __init__(self, message: str, *, protocol: str, response: bytes = b"") -> None:
        super().__init__(message, protocol=protocol, data=response)
        #: What the peer said last, if anything (at most 64 bytes).
        self.response = excerpt(response)


class StartTLSUsageError(StartTLSError, LocalProtocolError):
    """The negotiator was used in a way its state does not allow."""
