"""What the engine needs from a TLS library: one connection over two buffers.

A backend turns the TLS library's calls and exceptions into a small set of
return values and this package's typed errors, so the engine above never sees
``ssl.SSLWantReadError`` or an ``OpenSSL.SSL.Error``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import TLSError, UnsupportedFeatureError
from ..events import HANDSHAKE_FIELDS


class ByteQueue(Protocol):
    """The part of ``ssl.MemoryBIO`` the engine uses."""

    @property
    def pending(self) -> int:
        """Bytes queued."""
        ...  # pragma: no cover

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Append bytes."""
        ...  # pragma: no cover

    def read(self, size: int = -1, /) -> bytes:
        """Remove and return up to ``size`` bytes (all if negative)."""
        ...  # pragma: no cover

    def write_eof(self) -> None:
        """No more bytes will be written."""
        ...  # pragma: no cover


#: :meth:`TLSConnection.read_into` result: the peer's close_notify arrived.
#: Zero, as the stdlib's read returns then.
CLOSED = 0
#: :meth:`TLSConnection.read_into` result: a complete record is not there yet.
WANT_READ = -1
#: :meth:`TLSConnection.read_into` result: the network side ended (after
#: :meth:`TLSConnection.feed_eof`) without a close_notify.
EOF = -2


class TLSConnection(abc.ABC):
    """One TLS connection whose network side is a pair of memory buffers."""

    #: The backend's name (``"stdlib"``, ``"pyopenssl"``).
    name: str

    # -- the network side -------------------------------------------------
    #
    # Two byte queues with the interface of ``ssl.MemoryBIO``: ``write()``,
    # ``read(n=-1)``, ``pending`` and (incoming only) ``write_eof()``.  The
    # engine touches them directly on its hot path, so on the stdlib they
    # are the BIOs themselves and cost no Python frame.

    #: Bytes received from the network, not yet consumed by TLS.
    incoming: ByteQueue
    #: Bytes waiting to be sent to the network.
    outgoing: ByteQueue

    # -- TLS operations ---------------------------------------------------

    @abc.abstractmethod
    def do_handshake(self) -> bool:
        """Advance the handshake: True once complete, False if it needs input."""

    @abc.abstractmethod
    def read_into(self, size: int, view: memoryview) -> int:
        """Decrypt at most ``size`` bytes into ``view`` (``size`` is
        ``len(view)``, the order of the stdlib's ``read(len, buffer)``): the
        byte count, :data:`WANT_READ`, :data:`CLOSED` or :data:`EOF`.

        It may be the TLS library's own call and raise the library's errors
        (:attr:`raw_read_errors`); :meth:`read_error` turns one into a
        result or our typed error."""

    #: What :meth:`read_into` may raise besides our errors.
    raw_read_errors: tuple[type[BaseException], ...] = ()

    def read_error(self, exc: BaseException) -> int:
        """The :meth:`read_into` result for one of :attr:`raw_read_errors`,
        or raises our typed error for it.  A backend that declares no such
        errors is never asked; what it raised goes on as it is."""
        raise exc

    @abc.abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt all of ``data`` (never empty) into the outgoing buffer."""

    @abc.abstractmethod
    def send_close_notify(self) -> None:
        """Queue our close_notify; leaves any received bytes unread."""

    # -- details after the handshake ----------------------------------------

    @abc.abstractmethod
    def version(self) -> str:
        """``"TLSv1.2"`` or ``"TLSv1.3"``."""

    @abc.abstractmethod
    def cipher(self) -> tuple[str, str, int]:
        """(name, protocol, secret bits)."""

    @abc.abstractmethod
    def alpn_protocol(self) -> str | None:
        """The negotiated ALPN protocol."""

    @abc.abstractmethod
    def server_name(self) -> str | None:
        """The SNI name sent (client) or received (server)."""

    @abc.abstractmethod
    def peer_certificate_der(self) -> bytes | None:
        """The peer's leaf certificate, DER."""

    @abc.abstractmethod
    def peer_chain_der(self) -> list[bytes] | None:
        """The chain the peer sent, leaf first, or None if the backend cannot
        tell."""

    @abc.abstractmethod
    def verification(self) -> tuple[bool, str | None]:
        """(authorized, Node error code) for the peer's certificate."""

    def handshake_details(
        self,
    ) -> tuple[str, str, str | None, str | None, bool, str | None, bytes | None, bool]:
        """All a :class:`~securepair.events.HandshakeComplete` reports, in its
        field order: version, cipher name, ALPN protocol, server name,
        authorized, authorization error, peer certificate DER, session
        reused.  One call per handshake; a backend may answer it more
        cheaply than the eight questions one by one."""
        authorized, error = self.verification()
        return (
            self.version(),
            self.cipher()[0],
            self.alpn_protocol(),
            self.server_name(),
            authorized,
            error,
            self.peer_certificate_der(),
            self.session_reused(),
        )

    def handshake_now(self) -> tuple[dict[str, Any], Callable[[], dict[str, Any]] | None]:
        """What a :class:`~securepair.events.HandshakeComplete` reports, read
        as the handshake completes: the fields by name, and a function that
        gives any left out when first asked for (or None).  The function
        must not touch the live connection, which another thread may be
        using by then.  By default every field, at once."""
        return dict(zip(HANDSHAKE_FIELDS, self.handshake_details(), strict=True)), None

    @abc.abstractmethod
    def session(self) -> Any:
        """The current session object, for resumption."""

    @abc.abstractmethod
    def session_reused(self) -> bool:
        """True if the handshake resumed a session."""

    # -- features only some backends have -------------------------------------
    #
    # The defaults refuse, naming the backend that can; a backend that has
    # the feature overrides the method.

    #: True if :attr:`alerts` receives every alert sent and received.
    reports_alerts = False
    #: (description, fatal, sent) for each alert, when ``reports_alerts``.
    alerts: list[tuple[str, bool, bool]]
    #: The stapled OCSP response the server sent (client side), if asked for.
    ocsp_response: bytes | None = None

    def _unsupported(self, feature: str) -> UnsupportedFeatureError:
        return UnsupportedFeatureError(
            feature,
            f"{feature} is not available on backend {self.name!r}; use backend='pyopenssl'",
        )

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 keying material exporter."""
        raise self._unsupported("export_keying_material")

    def finished(self) -> tuple[bytes | None, bytes | None]:
        """(our Finished, the peer's Finished) verify_data."""
        raise self._unsupported("finished")

    def tls_unique(self) -> bytes | None:
        """The ``tls-unique`` channel binding (RFC 5929), TLS 1.2 only."""
        ours, theirs = self.finished()
        if self.version() != "TLSv1.2":
            return None
        # The first Finished of the handshake: the client's in a full
        # handshake, the server's in a resumption.
        client_first = not self.session_reused()
        mine_first = client_first != self.is_server
        return ours if mine_first else theirs

    #: True for the server side of a connection.
    is_server: bool = False

    #: The engine's hot write: encrypts ``data`` like :meth:`write`, but may
    #: be the TLS library's own call, raising its own errors.  Those are
    #: :attr:`raw_write_errors`, and :meth:`write_error` turns one into ours.
    #: By default it is :meth:`write` itself.
    raw_write_errors: tuple[type[BaseException], ...] = ()

    def raw_write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt all of ``data`` (see :attr:`raw_write_errors`)."""
        self.write(data)

    def write_error(self, exc: BaseException) -> TLSError:
        """Our typed error for an exception from :meth:`raw_write`.  A
        backend that declares no such errors is never asked; what it raised
        goes on as it is."""
        raise exc

    #: True while cleartext writes are held back (a renegotiation needs the
    #: peer's bytes first); :meth:`retry_blocked` sends them.
    blocked: bool = False

    def retry_blocked(self) -> None:
        """Send the writes held back while :attr:`blocked`."""
        # Backends that never hold writes back have nothing to send.
        self.blocked = False

    def renegotiate(self) -> None:
        """Start a TLS 1.2 renegotiation."""
        raise self._unsupported("renegotiate")

    def disable_renegotiation(self) -> None:
        """Refuse renegotiation from now on."""
        raise self._unsupported("disable_renegotiation")

    def unverified_chain_der(self) -> list[bytes] | None:
        """The chain as the peer sent it, leaf first, if the backend can tell."""
        return self.peer_chain_der()
