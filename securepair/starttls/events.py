"""The events a STARTTLS negotiator reports.

Frozen, keyword-only dataclasses, like the engine's events.  A negotiator's
events say what changed; the bytes to send are always read with
``negotiator.data_to_send()``.

Client side: :class:`ReadyToUpgrade` or :class:`TLSRefused` (only with
``allow_plaintext=True``; otherwise a refusal raises).  Server side:
:class:`CommandReceived` (the application answers it), :class:`ReadyToUpgrade`,
:class:`PlaintextRequested` and :class:`ConnectionClosed`.  Capability
follow-ups inside TLS report :class:`CapabilitiesReceived`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..events import NEED_DATA, NeedData

__all__ = [
    "Event",
    "ReadyToUpgrade",
    "TLSRefused",
    "CommandReceived",
    "PlaintextRequested",
    "ConnectionClosed",
    "CapabilitiesReceived",
    "NEED_DATA",
    "NeedData",
]


class Event:
    """Base class of the negotiators' events."""

    __slots__ = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadyToUpgrade(Event):
    """The switch point is reached.

    Send everything ``data_to_send()`` returns (on a server it ends with the
    go-ahead; on a client it is empty or, for MySQL, the SSLRequest), then
    call ``start_tls()`` and drive the returned pair from now on.
    """

    #: Server: bytes that arrived after the STARTTLS command so far.  With
    #: the default :attr:`~securepair.starttls.PipelinePolicy.TLS_INPUT`
    #: they are the start of the TLS handshake (a client that pipelined its
    #: ClientHello).  Always 0 on a client: any such byte is an injection.
    pipelined: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class TLSRefused(Event):
    """The server refused TLS and the client was made with
    ``allow_plaintext=True``.  The negotiator is finished (state
    ``PLAINTEXT``); the connection is plaintext and the caller continues it
    (``negotiator.trailing_data`` holds what came after the refusal)."""

    #: The refusal as it came on the wire (``b""`` if TLS was not offered).
    response: bytes
    #: Why, in words.
    reason: str
    #: False if the server refused the command; True if it never offered
    #: TLS (not in its capabilities, features or flags).
    not_offered: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandReceived(Event):
    """Server side: a plaintext command the application must answer.

    The negotiator parses no further input until the application calls one
    of ``reply(...)``, ``reply_raw(data)``, ``reply_default()`` or
    ``release()``; pipelined commands wait, in order.  STARTTLS itself and
    the commands that need TLS first are never reported: the negotiator
    answers them as its RFC says.
    """

    #: The command verb, upper case (``"EHLO"``, ``"CAPABILITY"``,
    #: ``"bindRequest"`` for LDAP, the element name for XMPP).
    command: str
    #: The rest of the line after the verb (without CRLF), or ``""``.
    argument: str
    #: The whole command as received, terminator included.
    raw: bytes
    #: IMAP's command tag (or LDAP's message ID as a string); else ``None``.
    tag: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaintextRequested(Event):
    """Server side: the client went ahead without TLS and the server allows
    it (``require_tls=False``): a PostgreSQL StartupMessage or CancelRequest
    without a preceding SSLRequest.  The negotiator is finished (state
    ``PLAINTEXT``); ``negotiator.trailing_data`` starts with that message."""

    #: What the client sent: ``"startup"`` or ``"cancel"``.
    kind: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionClosed(Event):
    """The conversation ended before TLS: the client quit (after the
    negotiator's goodbye, which is in ``data_to_send()``), or the peer
    closed the connection.  Close the transport after sending."""

    #: ``"quit"`` (QUIT, LOGOUT, unbind, ``</stream:stream>``...),
    #: ``"eof"`` (the transport ended) or ``"refused"`` (the negotiator
    #: refused the client and closes, e.g. a PostgreSQL StartupMessage
    #: when TLS is required).
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CapabilitiesReceived(Event):
    """A capability follow-up inside TLS got the server's fresh
    capabilities (EHLO keywords, CAPABILITY atoms, CAPA lines, FEAT lines,
    Sieve capabilities, XMPP stream features)."""

    #: The capabilities, one string each, as the server wrote them.
    capabilities: tuple[str, ...]
