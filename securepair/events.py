"""The events a :class:`~securepair.SecurePair` reports, in the order they happen.

Events are frozen, keyword-only dataclasses.  They tell the application what
changed; the bytes themselves are read from ``pair.cleartext`` and
``pair.encrypted``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .certinfo import PeerCertificate, node_certificate

__all__ = [
    "Event",
    "HandshakeComplete",
    "CleartextAvailable",
    "SessionTicket",
    "CloseNotifyReceived",
    "RaggedEOF",
    "AlertReceived",
    "AlertSent",
    "Unwrapped",
    "OCSPResponse",
    "NEED_DATA",
    "NeedData",
]


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(frozen=True, kw_only=True)
class HandshakeComplete(Event):
    """The handshake finished: Node's ``secure`` event."""

    #: Negotiated protocol, ``"TLSv1.2"`` or ``"TLSv1.3"``.
    version: str
    #: Negotiated cipher suite, OpenSSL name (``"TLS_AES_256_GCM_SHA384"``).
    cipher: str
    #: The ALPN protocol both sides agreed on, or ``None``.
    alpn_protocol: str | None
    #: The SNI host name: what the client asked for (on a server) or sent
    #: (on a client); ``None`` if none.
    server_name: str | None
    #: True if the peer's certificate verified against the configured CAs
    #: (and, on a client, matched the host name).
    authorized: bool
    #: Why not, as Node names it (``"CERT_HAS_EXPIRED"``...), or ``None``.
    authorization_error: str | None
    #: The peer's certificate in DER, or ``None`` if the peer sent none.
    peer_certificate_der: bytes | None = field(repr=False)
    #: True if an earlier session was resumed.
    session_reused: bool

    @classmethod
    def _deferred(
        cls, known: dict[str, Any], loader: Callable[[], dict[str, Any]] | None
    ) -> HandshakeComplete:
        """The event with the fields in ``known`` (which it takes over) and
        the rest from ``loader`` when one of them is first read: a backend's
        ``handshake_now()``.  Internal.  ``loader`` must not touch the live
        connection: an event may be read on any thread, at any time."""
        event = object.__new__(cls)
        if loader is not None:
            known["_loader"] = loader
        object.__setattr__(event, "__dict__", known)
        return event

    def __getattr__(self, name: str) -> Any:
        # Reached only for what the instance dictionary lacks: the fields
        # a backend left to its loader, before the first of them is read.
        fields = self.__dict__
        if name in HANDSHAKE_FIELDS:
            loader = fields.get("_loader")
            if loader is not None:
                # Filled before the loader goes; another thread reading
                # meanwhile may run it too, to the same effect.
                for key, value in loader().items():
                    fields.setdefault(key, value)
                fields.pop("_loader", None)
            if name in fields:
                return fields[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        # Copies and pickles carry the fields, not the loader.
        if "_loader" in self.__dict__:
            self.__getattr__("peer_certificate_der")
        return self.__dict__

    @functools.cached_property
    def peer_certificate(self) -> PeerCertificate | None:
        """The peer's certificate as a Node-style dict (see
        :func:`securepair.certinfo.node_certificate`), or ``None``.  Parsed
        on first access, so a handshake that never looks pays nothing."""
        if self.peer_certificate_der is None:
            return None
        return node_certificate(self.peer_certificate_der)


#: HandshakeComplete's fields, in the order of a backend's handshake_details().
HANDSHAKE_FIELDS = (
    "version",
    "cipher",
    "alpn_protocol",
    "server_name",
    "authorized",
    "authorization_error",
    "peer_certificate_der",
    "session_reused",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CleartextAvailable(Event):
    """Decrypted application bytes are waiting in ``pair.cleartext``.

    Consecutive arrivals that the application has not seen yet are merged
    into one event, and the event is made when it is taken, so it reports
    what is readable then.  Data the application already read before taking
    the event is not announced again.
    """

    #: Bytes readable from ``pair.cleartext`` when the event was taken.
    nbytes: int


@dataclass(frozen=True, kw_only=True)
class SessionTicket(Event):
    """The server gave this client a session it can resume later.

    Pass ``session`` as ``SecurePair(..., session=session)`` on a new
    connection to the same server.  With TLS 1.3 this arrives after the
    handshake, once the server's tickets have been read.
    """

    #: Fetches the session from the backend.  The stdlib copies a session
    #: through DER on every read, so it is fetched only if looked at.
    loader: Callable[[], Any] = field(repr=False, compare=False)

    @functools.cached_property
    def session(self) -> Any:
        """The backend's session object (``ssl.SSLSession`` on the stdlib,
        ``OpenSSL.SSL.Session`` on pyOpenSSL)."""
        return self.loader()


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseNotifyReceived(Event):
    """The peer sent close_notify: it will send no more data.  A clean close."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RaggedEOF(Event):
    """The transport ended without the peer's close_notify.

    Reported as an event only with ``allow_ragged_eof=True``; otherwise the
    same situation raises :class:`~securepair.errors.RaggedEOFError`.
    """


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertReceived(Event):
    """The peer sent a TLS alert."""

    #: Alert description, e.g. ``"handshake_failure"``, ``"unknown_ca"``.
    description: str
    #: True for a fatal alert (the connection is over).
    fatal: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertSent(Event):
    """We sent a TLS alert; its bytes are (or were) on the encrypted side."""

    #: Alert description, e.g. ``"bad_record_mac"``.
    description: str
    #: True for a fatal alert.
    fatal: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Unwrapped(Event):
    """Both close_notify messages crossed after :meth:`SecurePair.unwrap`:
    the connection is plaintext again."""

    #: Bytes that followed the peer's close_notify (plaintext of the next
    #: protocol phase).  Also in ``pair.trailing_data``.
    trailing_data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class OCSPResponse(Event):
    """The server's stapled OCSP response (client side, when the config
    set ``request_ocsp=True``).  Reported right after the handshake."""

    #: The DER OCSPResponse, or ``None`` if the server stapled none.
    response: bytes | None


class NeedData:
    """Sentinel type: no event is pending; feed more encrypted bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`SecurePair.next_event` when no event is pending.
NEED_DATA = NeedData()
