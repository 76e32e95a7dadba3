"""What the I/O adapters share: error types the stdlib's callers catch, the
TLS details every adapter exposes, and the constants of the failure path.

The adapters (:mod:`securepair.socket`, :mod:`securepair.asyncio`,
:mod:`securepair.anyio`) are the only code in the package that does I/O.
Each is a loop around a :class:`~securepair.SecurePair`: feed what arrived,
deliver the cleartext, send what the pair has to send.  This module holds
the parts that do not depend on the kind of I/O.

Errors
------
Code written for ``ssl.SSLSocket`` or for asyncio's TLS catches ``OSError``
or ``ssl.SSLError``; code written for securepair catches
:class:`~securepair.errors.NotTLSError` or
:class:`~securepair.errors.CertificateVerificationError`.  An adapter raises
one object that is both: :func:`ssl_compatible` turns the engine's error
into an instance of a subclass of its own class *and* of the matching
``ssl`` exception (``SSLCertVerificationError`` for certificate failures,
``SSLEOFError`` for a ragged EOF, ``SSLError`` otherwise).  The subclasses
are made once per engine class and cached.  Misuse of the API
(:class:`~securepair.errors.LocalProtocolError`) is left as it is: that is a
bug to fix, not a network condition to catch.

The failure path
----------------
When TLS fails, the pair has already put its alert on the encrypted side.
The peer should read that alert, not a connection reset.  A TCP stack
answers a close with unread bytes in the receive queue with a RST, and a RST
makes the peer's kernel discard what it had not read yet, alert included.
So every adapter does the same four things: send the alert, shut down its
write side (a FIN after the alert), read and discard what the peer still
sends for a short while (:data:`ALERT_DRAIN_TIMEOUT`, at most
:data:`ALERT_DRAIN_LIMIT` bytes), and only then close.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .config import TLSConfig, pem_file
from .errors import (
    CertificateVerificationError,
    LocalProtocolError,
    RaggedEOFError,
    SecurePairError,
)

if TYPE_CHECKING:
    from .certinfo import PeerCertificate
    from .events import Event, HandshakeComplete, NeedData
    from .pair import SecurePair

#: What the adapters accept as data: what the pair accepts.
Buffer = bytes | bytearray | memoryview

__all__ = [
    "ALERT_DRAIN_LIMIT",
    "Buffer",
    "ALERT_DRAIN_TIMEOUT",
    "ALERT_FLUSH_TIMEOUT",
    "RECV_SIZE",
    "TLSDetails",
    "ssl_compatible",
]

#: Bytes asked from the network per read.  Large enough that one read
#: carries many full TLS records (16 KiB of data each), so the per-read
#: Python cost is spread over a lot of data; small enough to stay in L2
#: cache.  It may exceed a small ``buffer_limit``: the pair then takes what
#: fits and the adapter keeps the rest until the application has read.
RECV_SIZE = 256 * 1024

#: Seconds to keep reading (and discarding) after a TLS failure, so that the
#: peer's last bytes do not turn our close into a reset that destroys the
#: alert.  A peer that got a fatal alert closes at once; one that does not
#: is not worth waiting for longer.
ALERT_DRAIN_TIMEOUT = 0.5

#: Bytes read and discarded at most during that drain.  A peer that keeps
#: sending after a fatal alert is not going to read it.
ALERT_DRAIN_LIMIT = 256 * 1024

#: Seconds allowed to send the alert (or a close_notify at close) when the
#: socket's send buffer is full.  An alert is a few dozen bytes; if a peer
#: has not made room for them in this time, it is not reading.
ALERT_FLUSH_TIMEOUT = 1.0


# ----------------------------------------------------------------------
# Errors the stdlib's callers recognise

_COMPAT: dict[type[BaseException], type[BaseException]] = {}


def _compat_class(cls: type[SecurePairError]) -> type[BaseException]:
    found = _COMPAT.get(cls)
    if found is None:
        if issubclass(cls, CertificateVerificationError):
            ssl_base: type[ssl.SSLError] = ssl.SSLCertVerificationError
        elif issubclass(cls, RaggedEOFError):
            ssl_base = ssl.SSLEOFError
        else:
            ssl_base = ssl.SSLError
        found = type(
            cls.__name__,
            (cls, ssl_base),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": f"{cls.__doc__ or ''}\n\n(Also an ``ssl.{ssl_base.__name__}``.)",
                # OSError's __str__ would print errno and strerror; keep ours.
                "__str__": cls.__str__,
            },
        )
        _COMPAT[cls] = found
    return found


def ssl_compatible(error: SecurePairError) -> SecurePairError:
    """The same error, as an instance that is also an ``ssl.SSLError``.

    Its class derives from the engine's class and from the ``ssl`` exception
    the stdlib raises for the same failure, so both ``except NotTLSError``
    and ``except ssl.SSLError`` (or ``except OSError``) catch it.  Attributes,
    message, cause and traceback are kept.  :class:`LocalProtocolError` and
    errors that already are ``ssl.SSLError`` are returned unchanged.
    """
    if isinstance(error, ssl.SSLError | LocalProtocolError):
        return error
    cls = _compat_class(type(error))
    compat = cls.__new__(cls)
    assert isinstance(compat, SecurePairError)
    compat.args = error.args
    compat.__dict__.update(error.__dict__)
    if not hasattr(compat, "reason"):
        compat.reason = None  # type: ignore[attr-defined]
    if not hasattr(compat, "library"):
        compat.library = None  # type: ignore[attr-defined]
    if isinstance(compat, ssl.SSLCertVerificationError):
        compat.verify_message = str(error)
    compat.__cause__ = error.__cause__
    compat.__suppress_context__ = error.__suppress_context__
    compat.__traceback__ = error.__traceback__
    return compat


# ----------------------------------------------------------------------
# Details


def stdlib_peercert(der: bytes) -> dict[str, Any]:
    """``SSLSocket.getpeercert()``'s dict for a DER certificate.

    Made by the very function the stdlib uses, so the keys and the value
    formats are exactly the stdlib's.  That function reads only files, so the
    certificate goes through an anonymous memory file.
    """
    decode = ssl._ssl._test_decode_cert  # type: ignore[attr-defined]
    pem = ssl.DER_cert_to_PEM_cert(der).encode("ascii")
    with pem_file(pem) as path:
        return decode(path)  # type: ignore[no-any-return]


class TLSDetails:
    """The TLS details of a connection, in both spellings.

    The stdlib's (``version()``, ``cipher()``, ``selected_alpn_protocol()``,
    ``getpeercert()``), so code written for ``ssl.SSLSocket`` or
    ``ssl.SSLObject`` works, and the pair's (``authorized``,
    ``authorization_error``, ``alpn_protocol``, ``server_name``,
    ``peer_certificate()``, ``session``, ``session_reused``, the events).
    Like the pair, and unlike the stdlib, asking before the handshake is a
    :class:`~securepair.errors.HandshakeNotCompleteError`, not ``None``.
    """

    #: The engine underneath.  Reading from it or writing to it directly
    #: bypasses the adapter; it is here for its details and events.
    pair: SecurePair

    # -- the stdlib's spelling ---------------------------------------------

    def version(self) -> str:
        """The negotiated protocol: ``"TLSv1.2"`` or ``"TLSv1.3"``."""
        return self.pair.version

    def cipher(self) -> tuple[str, str, int]:
        """(cipher name, protocol, secret bits), as ``SSLSocket.cipher()``."""
        return self.pair.cipher_info()

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on, or ``None``."""
        return self.pair.alpn_protocol

    def compression(self) -> None:
        """Always ``None``: TLS compression is off (CRIME)."""

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate, as ``SSLSocket.getpeercert()`` gives it.

        With ``binary_form=True``, the DER bytes (or ``None`` if the peer
        sent none).  Otherwise the stdlib's dict, which, as in the stdlib,
        is empty when the certificate was not verified; see
        :meth:`peer_certificate` for a dict that is always filled.
        """
        der = self.pair.peer_certificate_der()
        if binary_form:
            return der
        if der is None:
            return None
        if not self.pair.authorized:
            return {}
        return stdlib_peercert(der)

    # -- the pair's spelling -----------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        """True once the handshake has completed."""
        return self.pair.handshake_complete

    @property
    def handshake_event(self) -> HandshakeComplete:
        """The :class:`~securepair.events.HandshakeComplete` event: every
        detail of the handshake in one object."""
        return self.pair.handshake_event

    @property
    def alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on, or ``None``."""
        return self.pair.alpn_protocol

    @property
    def server_name(self) -> str | None:
        """SNI host name: requested by the client (on a server) or sent."""
        return self.pair.server_name

    @property
    def authorized(self) -> bool:
        """True if the peer's certificate verified (Node's ``authorized``)."""
        return self.pair.authorized

    @property
    def authorization_error(self) -> str | None:
        """Why the peer is not authorized, as Node names it, or ``None``."""
        return self.pair.authorization_error

    def peer_certificate(self, detailed: bool = False) -> PeerCertificate | None:
        """The peer's certificate as a Node-style dict, or ``None``."""
        return self.pair.peer_certificate(detailed)

    @property
    def session(self) -> Any:
        """The session, to pass as ``session=`` when reconnecting."""
        return self.pair.session

    @property
    def session_reused(self) -> bool:
        """True if this handshake resumed an earlier session."""
        return self.pair.session_reused

    def next_event(self) -> Event | NeedData:
        """The pair's oldest pending event (see
        :meth:`SecurePair.next_event`).  The adapter does not consume the
        pair's events; they wait here until asked for."""
        return self.pair.next_event()

    def events(self) -> Iterator[Event]:
        """Iterate over (and remove) the pair's pending events."""
        return self.pair.events()


def stdlib_context_of(config: Any, server_side: bool) -> Any:
    """The ``ssl.SSLContext`` behind a config, for code that asks for
    ``sslcontext``; the config itself when it has none (pyOpenSSL)."""
    if isinstance(config, ssl.SSLContext):
        return config
    if isinstance(config, TLSConfig) and config.resolved_backend() == "stdlib":
        return config.stdlib_context(server_side=server_side)
    return config
