"""SecurePair: one TLS connection between two byte buffers.

Theory of operation
===================

A pair has two sides, each a duplex byte buffer, after Node's
``tls.createSecurePair()``:

* ``pair.encrypted`` is the network side.  The driver writes into it every
  byte that arrived from the peer and reads out of it every byte to send.
* ``pair.cleartext`` is the application side.  The application writes the
  bytes it wants protected and reads the bytes the peer sent.

The pair never does I/O, never starts a thread, never reads a clock.  Each
call does all the work its input allows and returns; what the call produced
waits in a buffer or as an event until someone takes it.  So a driver is
always the same loop: feed what arrived, drain events, send what is pending.

Eager processing
----------------
``encrypted.write()`` runs TLS as far as the input allows: it advances the
handshake, then decrypts every complete record into the cleartext buffer.
Errors therefore surface where the bad bytes went in, close_notify is noticed
when it arrives rather than when the application next reads, and a TLS 1.3
server's session tickets are processed even by a client that only writes
(trio issue #819: a peer that waits for a ticket the other side never reads
waits forever).  Decryption stops only when the cleartext buffer reaches its
limit; the remaining ciphertext waits in the backend's buffer and is
decrypted as the application reads.  That is the backpressure chain: an
application that does not read fills the cleartext buffer, then the
encrypted input buffer, and then ``encrypted.write()`` accepts fewer bytes
and finally raises :class:`~securepair.errors.BufferFullError`.

Why the output is read, not returned
------------------------------------
TLS produces output in response to input (handshake replies, alerts, key
updates, close_notify), not only in response to application writes.  So, as
in h2, output accumulates in one place, ``pair.encrypted``, and the driver
drains it after every call, whatever the call was.

States
------
The state is derived from a few facts: has the handshake completed, have we
sent close_notify, has the peer's arrived, did the transport end, did
something fail.  The table :data:`ALLOWED` lists, for each state, the calls
that make sense in it; any other call is a
:class:`~securepair.errors.LocalProtocolError` naming the state.  Once a call
fails because of the peer or TLS, the state is ERROR and stays so: the error
is raised once, with its alert already on the encrypted side, and later calls
that would need TLS raise ``LocalProtocolError`` chained to it.  Reading
pending bytes from either side always works, so the alert can still be sent.

Bytes are never lost and never change sides
-------------------------------------------
Every byte written to ``pair.encrypted`` is either consumed by TLS or ends up
in :attr:`SecurePair.trailing_data`: what followed the peer's close_notify
(after a close or an :meth:`SecurePair.unwrap`), or what TLS had not consumed
when the pair failed.  Trailing bytes are never decrypted, never shown as
cleartext; they belong to whatever protocol comes next.

The first bytes
---------------
Before the first TLS record arrives, the first two bytes are checked.  A peer
that is not speaking TLS (an HTTP client on an HTTPS port, a mail server whose
STARTTLS step was skipped) gets a :class:`~securepair.errors.NotTLSError`
that says what the bytes look like and shows them, instead of OpenSSL's
"wrong version number".
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import ssl
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .backends.base import CLOSED, EOF, WANT_READ, TLSConnection
from .backends.stdlib import StdlibConnection
from .certinfo import PeerCertificate, node_certificate, node_certificate_chain
from .config import TLSConfig
from .errors import (
    BufferFullError,
    ConfigError,
    HandshakeNotCompleteError,
    LocalProtocolError,
    RaggedEOFError,
    SecurePairError,
    TLSAlertReceivedError,
    TLSError,
)
from .events import (
    NEED_DATA,
    AlertReceived,
    AlertSent,
    CleartextAvailable,
    CloseNotifyReceived,
    Event,
    HandshakeComplete,
    NeedData,
    OCSPResponse,
    RaggedEOF,
    SessionTicket,
    Unwrapped,
)
from .records import is_tls_start, not_tls_error

#: What the write methods accept.
Buffer = bytes | bytearray | memoryview

__all__ = ["SecurePair", "PairState", "ALLOWED"]

#: Largest TLS plaintext record (RFC 8446 5.1).  Below its last record's
#: worth of the limit, the cleartext buffer offers at least this much room to
#: a read, so one read takes a whole record; nearer the limit OpenSSL keeps
#: the rest of a record, and the pair reads it once the application has read.
MAX_RECORD_PLAINTEXT = 2**14

#: Bytes a TLS 1.3 AEAD record adds to its data: a 5-byte header, the inner
#: content type byte and a 16-byte tag (AES-GCM, ChaCha20-Poly1305, AES-CCM).
TLS13_RECORD_OVERHEAD = 5 + 1 + 16

#: First size of the cleartext buffer: one full record.  It is made at the
#: first read (a TLS 1.3 client's is the one that takes the session tickets),
#: and grows (doubling, up to the configured limit) when records arrive in
#: batches or the application lets data pile up.
INITIAL_BUFFER = MAX_RECORD_PLAINTEXT


class PairState(enum.Enum):
    """Where a pair is in its life."""

    #: The handshake has not completed.
    HANDSHAKING = "handshaking"
    #: Data flows both ways.
    OPEN = "open"
    #: We sent close_notify; the peer may still send data (TLS 1.3 half-close).
    CLOSING = "closing"
    #: The peer sent close_notify; we may still send (half-close).
    PEER_CLOSED = "peer_closed"
    #: Both close_notify messages were exchanged, or the transport ended.
    CLOSED = "closed"
    #: :meth:`SecurePair.unwrap` completed: the connection is plaintext again.
    UNWRAPPED = "unwrapped"
    #: TLS or the peer failed; the pair is unusable.
    ERROR = "error"

    # Members are singletons and equal only to themselves, so the identity
    # hash agrees with equality; Enum's own hashes the name in Python, a
    # call on every state change for the tables below.
    __hash__ = object.__hash__


_S = PairState


_weakref = weakref.ref


def _no_error() -> None:
    """Stands in for a dead weak reference to the raised error."""


#: States after which the connection carries nothing more.
_ENDED = frozenset({_S.CLOSED, _S.ERROR, _S.UNWRAPPED})
#: States in which fed bytes, once they are known to be TLS, go straight to
#: the TLS library (SecurePair._feed's fast path).
_FAST_FEED = frozenset({_S.HANDSHAKING, _S.OPEN, _S.CLOSING})

#: The calls each state allows.  Reading pending bytes from either side is
#: always allowed and not listed.
ALLOWED: dict[PairState, frozenset[str]] = {
    _S.HANDSHAKING: frozenset({"feed", "write", "close"}),
    _S.OPEN: frozenset({"feed", "write", "close", "unwrap"}),
    _S.CLOSING: frozenset({"feed", "close", "unwrap"}),
    _S.PEER_CLOSED: frozenset({"feed", "write", "close", "unwrap"}),
    _S.CLOSED: frozenset({"feed", "close", "unwrap"}),
    _S.UNWRAPPED: frozenset({"close"}),
    _S.ERROR: frozenset({"close"}),
}


#: What SecurePair._refresh sets for each state: feed allowed, write
#: allowed, the fast feed path once the input is known to be TLS, ended.
_FLAGS = {
    state: ("feed" in allowed, "write" in allowed, state in _FAST_FEED, state in _ENDED)
    for state, allowed in ALLOWED.items()
}


class _DataMarker(Event):
    """Queued in place of a CleartextAvailable event; the event is made when
    the application asks for it, so a stream the application reads without
    looking at events costs no object per record batch."""

    __slots__ = ()


_DATA = _DataMarker()

_WHAT = {
    "feed": "write to pair.encrypted",
    "write": "write to pair.cleartext",
    "close": "close()",
    "unwrap": "unwrap()",
}


def _checked_hostname(name: str) -> str:
    """The host name a client sends as SNI and verifies, or ``ConfigError``.

    One trailing dot (a fully qualified name) is dropped: SNI carries names
    without it (RFC 6066 section 3) and certificates name hosts without it.
    A name that is not a valid host name (letters, digits, hyphens and
    underscores in labels of 1 to 63 bytes, after IDNA) is refused here, the
    same on every backend, rather than being sent, or worse, left
    unchecked: OpenSSL's host check refuses such names by switching itself
    off.
    """
    if not isinstance(name, str):
        raise ConfigError("server_hostname", f"must be a str, not {type(name).__name__}")
    return _checked_hostname_str(name)


_LABEL = re.compile(rb"[A-Za-z0-9_-]{1,63}")


@functools.lru_cache(maxsize=256)
def _checked_hostname_str(name: str) -> str:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if getattr(address, "scope_id", None):
            raise ConfigError(
                "server_hostname",
                f"{name!r}: an IPv6 zone (%...) cannot be checked against a certificate; "
                "give the address without it",
            )
        return name
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if not name:
        raise ConfigError("server_hostname", "is empty")
    try:
        encoded = name.encode("ascii") if name.isascii() else name.encode("idna")
    except UnicodeError:
        raise ConfigError("server_hostname", f"{name!r} is not a valid host name") from None
    labels = encoded.split(b".")
    if all(label.isdigit() for label in labels):
        raise ConfigError(
            "server_hostname", f"{name!r} looks like an IPv4 address but is not a valid one"
        )
    if len(encoded) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            "server_hostname",
            f"{name!r} is not a valid host name (labels of letters, digits and hyphens, "
            "1 to 63 bytes each)",
        )
    return name


def _detached_copy(error: SecurePairError) -> SecurePairError:
    """The same error without its traceback, for the pair to keep.

    The error itself is raised, and its traceback holds the pair's frames;
    kept by the pair, it would make a reference cycle, which keeps a failed
    pair and its OpenSSL state alive until the next full collection.  The
    copy says the same (type, message, attributes, cause) for later calls.
    """
    copy = error.__class__.__new__(error.__class__)
    copy.args = error.args
    copy.__dict__.update(error.__dict__)
    # Causes go the same way: the backend's own exception (an ssl.SSLError)
    # has a traceback whose frames lead back, through f_back, to the pair's.
    # The raised error keeps the whole chain for the application.
    cause = error.__cause__
    copy.__cause__ = _detached_copy(cause) if isinstance(cause, SecurePairError) else None
    copy.__suppress_context__ = error.__suppress_context__
    return copy


def _make_connection(
    config: TLSConfig | ssl.SSLContext | Any,
    server_side: bool,
    server_hostname: str | None,
    session: Any,
) -> TLSConnection:
    if isinstance(config, TLSConfig):
        if config.resolved_backend() == "stdlib":
            return StdlibConnection(
                config.stdlib_context(server_side=server_side),
                server_side=server_side,
                server_hostname=server_hostname,
                session=session,
                plain=True,
            )
    elif isinstance(config, ssl.SSLContext):
        return StdlibConnection(
            config, server_side=server_side, server_hostname=server_hostname, session=session
        )
    elif type(config).__module__ != "OpenSSL.SSL":
        raise ConfigError(
            "config",
            "expected a TLSConfig, ssl.SSLContext or OpenSSL.SSL.Context, "
            f"not {type(config).__name__}",
        )
    return _pyopenssl_factory()(config, server_side, server_hostname, session)


@functools.cache
def _pyopenssl_factory() -> Callable[..., TLSConnection]:
    # Imported on first use (pyOpenSSL is optional), then kept: an import
    # statement costs a failed attribute lookup, an exception made and
    # dropped, each time it runs.
    from .pyopenssl_config import make_connection

    return make_connection


class SecurePair:
    """A sans-IO TLS connection between an encrypted and a cleartext buffer.

    ``config`` is a :class:`~securepair.TLSConfig`, an ``ssl.SSLContext`` or
    an ``OpenSSL.SSL.Context``.  A client's ClientHello is readable from
    ``pair.encrypted`` as soon as the pair exists.  ``initial_data`` holds
    bytes already read from the peer (the STARTTLS case) and is treated
    exactly like a first ``pair.encrypted.write()``.  ``session`` resumes a
    session from an earlier :class:`~securepair.events.SessionTicket`.
    """

    # Slots: a pair is 408 bytes, against about 1,600 with an instance
    # dictionary, and a server makes one per connection.  __dict__ is there
    # for attributes an application hangs on a pair; it is made only if one
    # does.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_alerts",
        "_allow_ragged_eof",
        "_buf",
        "_bytes_received",
        "_can_feed",
        "_can_write",
        "_cleartext_ref",
        "_close_after_handshake",
        "_conn",
        "_deferred_error",
        "_encrypted_ref",
        "_end",
        "_eof",
        "_error",
        "_error_raised",
        "_events",
        "_fast_feed",
        "_fast_write",
        "_first_bytes",
        "_handshake_done",
        "_handshake_event",
        "_in",
        "_limit",
        "_out",
        "_queued",
        "_queued_size",
        "_raw_write",
        "_raw_write_errors",
        "_record_head",
        "_record_left",
        "_recv_close",
        "_request_ocsp",
        "_sent_close",
        "_side_attributes",
        "_start",
        "_throttled",
        "_tls_seen",
        "_trailing",
        "_unwrapped",
        "_unwrapping",
        "_view",
        "_watch_tickets",
        "backend",
        "server_side",
    )

    def __init__(
        self,
        config: TLSConfig | ssl.SSLContext | Any,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        session: Any = None,
        initial_data: Buffer = b"",
    ) -> None:
        if isinstance(config, TLSConfig):
            self._limit = config.buffer_limit
            self._allow_ragged_eof = config.allow_ragged_eof
            self._request_ocsp = config.request_ocsp
            if server_hostname is None and not server_side:
                server_hostname = config.servername
        else:
            self._limit = TLSConfig.buffer_limit
            self._allow_ragged_eof = False
            self._request_ocsp = False
        self.server_side = server_side
        if server_hostname is not None and not server_side:
            server_hostname = _checked_hostname(server_hostname)
        if not server_side and server_hostname is None:
            # ssl.SSLObject does not refuse this (SSLSocket does): without a
            # host name, check_hostname silently checks nothing and any
            # certificate from a trusted CA would be accepted.
            if isinstance(config, TLSConfig):
                checks = config.check_hostname and not config.insecure_no_verify
            else:
                checks = bool(getattr(config, "check_hostname", False))
            if checks:
                raise ConfigError(
                    "server_hostname",
                    "a client that verifies the server needs its host name "
                    "(or check_hostname=False, or insecure_no_verify=True)",
                )
        try:
            self._conn = _make_connection(config, server_side, server_hostname, session)
        except ConfigError:
            raise
        except ValueError as exc:
            if "ession" in str(exc) and session is not None:
                raise ConfigError(
                    "session",
                    "was made by a connection with another TLSConfig or context; a "
                    "session can only be resumed with the config that made it",
                ) from None
            if "server_hostname" in str(exc):
                raise ConfigError(
                    "server_hostname",
                    "a client that verifies the server needs its host name "
                    "(or check_hostname=False, or insecure_no_verify=True)",
                ) from None
            raise
        self.backend: str = self._conn.name
        self._raw_write = self._conn.raw_write
        self._raw_write_errors = self._conn.raw_write_errors
        self._in = self._conn.incoming
        self._out = self._conn.outgoing
        self._alerts = self._conn.alerts
        # Each side holds the pair (its hot methods are the pair's bound
        # methods), so a strong reference back from the pair would make a
        # cycle, and a pair dropped by its application would wait, OpenSSL's
        # state and buffers with it, for the cycle collector.  (Measured: a
        # handshake was 5% slower for the memory that kept.)  So the pair
        # holds its sides weakly, makes one on demand, and keeps what an
        # application set on a side here while the connection lasts (see
        # _Side).
        self._encrypted_ref: weakref.ref[EncryptedSide] | None = None
        self._cleartext_ref: weakref.ref[CleartextSide] | None = None
        self._side_attributes: dict[str, dict[str, Any]] | None = None
        self._events: deque[Event] = deque()
        self._handshake_done = False
        self._sent_close = False
        self._recv_close = False
        self._eof = False
        self._unwrapping = False
        self._unwrapped = False
        self._close_after_handshake = False
        self._error: SecurePairError | None = None
        self._error_raised: Callable[[], SecurePairError | None] = _no_error
        # An error met while a read made room, raised once the data before
        # it has been read (see _pump_after_read).
        self._deferred_error: SecurePairError | None = None
        self._tls_seen = False
        self._first_bytes = b""
        # Where the TLS input stands in its record framing, so that an EOF
        # can tell a stream that ended between records from one cut inside
        # a record.  OpenSSL cannot say: it moves a partial record out of
        # the input buffer into its own, where pending no longer sees it.
        # Body bytes of the current record not yet received:
        self._record_left = 0
        # The start of a record header that has not fully arrived:
        self._record_head = b""
        self._bytes_received = 0
        self._trailing = bytearray()
        # Cleartext written before the handshake completed, sent after it.
        self._queued: list[bytes] = []
        self._queued_size = 0
        # The cleartext buffer: data lives in _buf[_start:_end].
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._watch_tickets = False
        self._throttled = False
        self._handshake_event: HandshakeComplete | None = None
        # Fast-path copies of ALLOWED[state] for the two hot operations,
        # refreshed on every state change by _refresh().
        self._can_feed = True
        self._can_write = True
        # Writes go straight to TLS: the handshake is done and writing allowed.
        self._fast_write = False
        # True while fed bytes go straight to TLS record processing (once
        # the first are known to be TLS, see _feed).
        self._fast_feed = True
        if not server_side:
            self._step_handshake()
        if initial_data:
            data = memoryview(initial_data)
            accepted = self._feed(data)
            if accepted < len(data):
                raise BufferFullError(
                    f"initial_data is {len(data)} bytes, over the buffer limit",
                    buffer="encrypted",
                    limit=self._limit,
                )

    @property
    def encrypted(self) -> EncryptedSide:
        """The network side: :class:`EncryptedSide`."""
        ref = self._encrypted_ref
        if ref is not None:
            side = ref()
            if side is not None:
                return side
        side = EncryptedSide(self)
        self._encrypted_ref = _weakref(side)
        return side

    @property
    def cleartext(self) -> CleartextSide:
        """The application side: :class:`CleartextSide`."""
        ref = self._cleartext_ref
        if ref is not None:
            side = ref()
            if side is not None:
                return side
        side = CleartextSide(self)
        self._cleartext_ref = _weakref(side)
        return side

    # ------------------------------------------------------------------
    # State

    @property
    def state(self) -> PairState:
        """The current :class:`PairState`, derived from what has happened."""
        if self._error is not None:
            return _S.ERROR
        if self._unwrapped:
            return _S.UNWRAPPED
        if not self._handshake_done:
            return _S.HANDSHAKING
        if self._eof or (self._sent_close and self._recv_close):
            return _S.CLOSED
        if self._sent_close:
            return _S.CLOSING
        if self._recv_close:
            return _S.PEER_CLOSED
        return _S.OPEN

    def _refresh(self) -> None:
        """Recompute the fast-path flags after a state change."""
        can_feed, can_write, fast_feed, ended = _FLAGS[self.state]
        self._can_feed = can_feed
        self._can_write = can_write
        self._fast_write = can_write and self._handshake_done
        self._fast_feed = fast_feed
        if ended and self._side_attributes is not None:
            # Once the connection has ended the pair forgets what was set on
            # its sides (a side still held keeps its own): an attribute that
            # refers back to the pair, a handler say, makes no cycle then.
            self._side_attributes = None

    def _check(self, operation: str) -> None:
        state = self.state
        if operation in ALLOWED[state]:
            return
        if state is _S.ERROR:
            raise LocalProtocolError(
                f"cannot {_WHAT[operation]}: the pair failed earlier ({self._error})"
            ) from (self._error_raised() or self._error)
        if state is _S.UNWRAPPED:
            raise LocalProtocolError(
                f"cannot {_WHAT[operation]}: the pair is unwrapped and the connection "
                "is plaintext now (see trailing_data)"
            )
        if operation == "write":
            raise LocalProtocolError(
                f"cannot write to pair.cleartext in state {state.value}: "
                "close() was called (or the transport ended)"
            )
        raise LocalProtocolError(f"cannot {_WHAT[operation]} in state {state.value}")

    def _fail(self, error: SecurePairError) -> SecurePairError:
        """Enter ERROR; the caller raises what this returns."""
        # The pair keeps a copy without the traceback (see _detached_copy),
        # and the raised error itself only while the application does, so
        # that later errors chain to the very object it caught.
        self._error = _detached_copy(error)
        self._error_raised = weakref.ref(error)
        self._refresh()
        if self._conn.reports_alerts:
            self._drain_alerts()
        elif isinstance(error, TLSError) and error.alert:
            if isinstance(error, TLSAlertReceivedError):
                self._events.append(AlertReceived(description=error.alert, fatal=True))
            elif error.alert_sent:
                self._events.append(AlertSent(description=error.alert, fatal=True))
        # Whatever TLS did not consume is accounted for as trailing data.
        leftover = self._in.read()
        if leftover:
            self._trailing += leftover
        return error

    def _drain_alerts(self) -> None:
        """Turn the alerts the backend saw into events (close_notify has its
        own event)."""
        alerts = self._alerts
        for description, fatal, sent in alerts:
            if description == "close_notify":
                continue
            if sent:
                self._events.append(AlertSent(description=description, fatal=fatal))
            else:
                self._events.append(AlertReceived(description=description, fatal=fatal))
        alerts.clear()

    # ------------------------------------------------------------------
    # Events

    def next_event(self) -> Event | NeedData:
        """The oldest pending event, or :data:`~securepair.events.NEED_DATA`."""
        events = self._events
        while events:
            event = events.popleft()
            if event is _DATA:
                if self._end == self._start:
                    continue  # already read: nothing to announce
                return CleartextAvailable(nbytes=self._end - self._start)
            return event
        return NEED_DATA

    def events(self) -> Iterator[Event]:
        """Iterate over (and remove) the pending events."""
        pop = self._events.popleft
        while self._events:
            event = pop()
            if event is not _DATA:
                yield event
            elif self._end != self._start:
                yield CleartextAvailable(nbytes=self._end - self._start)

    # ------------------------------------------------------------------
    # The encrypted side, inbound

    def _feed(self, data: Buffer) -> int:
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        if not data:
            self._feed_eof()
            return 0
        size = len(data)
        if self._fast_feed:
            incoming = self._in
            if incoming.pending + size <= self._limit and (
                self._tls_seen or self._starts_tls(data)
            ):
                incoming.write(data)
                self._bytes_received += size
                pos = self._record_left
                if pos >= size:
                    self._record_left = pos - size
                elif self._record_head:
                    self._track_records(data)
                else:
                    # _track_records for the usual case, inline: the
                    # headers in data arrived whole.
                    last = size - 5
                    while pos <= last:
                        pos += 5 + ((data[pos + 3] << 8) | data[pos + 4])
                    if pos >= size:
                        self._record_left = pos - size
                    else:
                        self._track_records(data)
                if self._handshake_done:
                    self._pump_in()
                else:
                    # _step_handshake, without its frame.
                    try:
                        done = self._conn.do_handshake()
                    except TLSError as exc:
                        raise self._fail(exc) from None
                    if done:
                        self._on_handshake_complete()
                        if incoming.pending:
                            self._pump_in()
                if self._alerts:
                    self._drain_alerts()
                return size
        elif not self._can_feed:
            self._check("feed")
        if self._recv_close or self._eof:
            # After the peer's close_notify nothing is TLS any more.
            room = self._limit - len(self._trailing)
            if room <= 0:
                raise BufferFullError(
                    "trailing data after close_notify exceeds the buffer limit",
                    buffer="encrypted",
                    limit=self._limit,
                )
            accepted = min(size, room)
            self._trailing += data[:accepted]
            self._bytes_received += accepted
            if self._unwrapping:
                self._finish_unwrap()
            return accepted
        incoming = self._in
        limit = self._limit
        if not self._tls_seen:
            # Bytes in pieces, not TLS at all, or more than the input
            # buffer takes at once (the fast path takes the rest).
            self._check_first_bytes(data)
        taken = 0
        if size > limit - incoming.pending and type(data) is bytes:
            # It goes in slices: of bytes a slice is a copy, of a view not.
            data = memoryview(data)
        # Feed in slices no larger than the input buffer's free room,
        # decrypting between them: the input buffer only fills up when the
        # cleartext buffer is full too.
        while taken < size:
            room = limit - incoming.pending
            if room <= 0:
                break
            piece = data[taken : taken + room] if size - taken > room else data[taken:]
            incoming.write(piece)
            self._track_records(piece)
            taken += len(piece)
            self._bytes_received += len(piece)
            if self._handshake_done or self._step_handshake():
                self._pump_in()
        if self._alerts:
            self._drain_alerts()
        if not taken:
            raise BufferFullError(
                "encrypted input is not being consumed: read pair.cleartext first",
                buffer="encrypted",
                limit=limit,
            )
        return taken

    def _starts_tls(self, data: bytes | memoryview) -> bool:
        """True (and TLS seen) if ``data``, the first bytes the pair gets,
        start as a TLS record does (content type 20-24, major version 3):
        the usual start.  A single byte, or anything else, goes the slow
        way, past the sniffer."""
        if len(data) >= 2 and 20 <= data[0] <= 24 and data[1] == 3 and not self._first_bytes:
            self._tls_seen = True
        return self._tls_seen

    def _track_records(self, data: bytes | memoryview) -> None:
        """Follow the record headers in ``data``, TLS input just fed."""
        size = len(data)
        pos = self._record_left  # the rest of the current record's body
        head = self._record_head
        while pos < size:
            if head or size - pos < 5:
                need = 5 - len(head)
                head += bytes(data[pos : pos + need])
                if len(head) < 5:
                    pos = size
                    break
                pos += need
                length = (head[3] << 8) | head[4]
                head = b""
            else:
                length = (data[pos + 3] << 8) | data[pos + 4]
                pos += 5
            pos += length
        self._record_head = head
        self._record_left = pos - size

    def _check_first_bytes(self, data: bytes | memoryview) -> None:
        head = self._first_bytes + bytes(data[:32])
        if len(head) >= 2:
            self._tls_seen = True
        if is_tls_start(head):
            self._first_bytes = head[:32]
            return
        error = not_tls_error(head)
        assert error is not None
        # Take no more than the input buffer holds: a flood of garbage costs
        # one buffer, not its own size.
        room = self._limit - self._in.pending
        if len(data) > room:
            data = data[:room]
        # Let the TLS library see the bytes too, so whatever alert it sends
        # for them is on the encrypted side before the error comes up.
        self._in.write(data)
        self._bytes_received += len(data)
        try:
            self._conn.do_handshake()
        except TLSError as tls_error:
            error.__cause__ = tls_error
        self._fail(error)
        # None of it was TLS, so all of it is handed back, including what
        # OpenSSL had already moved into its own record buffer: the caller
        # may want to answer it (an HTTP 400 to an HTTP client, say).
        self._trailing[:] = self._first_bytes + bytes(data)
        try:
            raise error
        finally:
            # The traceback keeps this frame; a local naming the error
            # would close a cycle (error, frame, pair) that only the cycle
            # collector could free.
            del error

    def _feed_eof(self) -> None:
        if self._eof or self._error is not None or self._unwrapped:
            return
        if self._recv_close:
            self._eof = True
            self._refresh()
            return
        if not self._handshake_done:
            self._eof = True
            received = self._bytes_received
            raise self._fail(
                RaggedEOFError(
                    "peer closed the connection during the TLS handshake "
                    f"(after sending {received} bytes)"
                )
            )
        self._in.write_eof()
        self._eof = True
        self._refresh()
        self._pump_in()

    def _step_handshake(self) -> bool:
        try:
            done = self._conn.do_handshake()
        except TLSError as exc:
            raise self._fail(exc) from None
        if done:
            self._on_handshake_complete()
        return done

    def _on_handshake_complete(self) -> None:
        self._handshake_done = True
        self._tls_seen = True
        # The state is OPEN now (a close() asked for during the handshake
        # comes below): what _refresh would set, without its frame.
        self._can_feed = self._can_write = self._fast_write = self._fast_feed = True
        conn = self._conn
        known, loader = conn.handshake_now()
        tls13 = known["version"] == "TLSv1.3"
        event = HandshakeComplete._deferred(known, loader)
        self._handshake_event = event
        if self._alerts:
            self._drain_alerts()
        self._events.append(event)
        if self._request_ocsp and not self.server_side:
            self._events.append(OCSPResponse(response=conn.ocsp_response))
        if not self.server_side:
            # A TLS 1.2 session exists once the handshake is done.  TLS 1.3
            # tickets come after it, in the first records the server sends
            # once it has our Finished; _pump_in watches that batch.
            if tls13:
                self._watch_tickets = True
            else:
                self._events.append(SessionTicket(loader=conn.session))
        if self._queued:
            queued, self._queued = self._queued, []
            self._queued_size = 0
            for chunk in queued:
                self._encrypt(chunk)
        if self._close_after_handshake:
            self._send_close_notify()

    def _pump_in(self) -> None:
        """Decrypt buffered records into the cleartext buffer, up to its limit."""
        incoming = self._in
        if not incoming.pending and not self._eof and not self._throttled:
            return
        # Throttled, the input may be empty and yet not all read: near the
        # limit a read takes less than a record, and OpenSSL keeps the rest
        # of that record, decrypted, until the next read.
        conn = self._conn
        read_into = conn.read_into
        limit = self._limit
        got = 0
        records = 0
        watch = self._watch_tickets
        before = incoming.pending if watch else 0
        self._throttled = False
        size = len(self._buf)
        end = self._end
        while True:
            free = limit - end + self._start
            if free <= 0:
                # Backpressure: the rest waits in the backend until the
                # application reads.
                self._throttled = True
                break
            room = size - end
            if room < MAX_RECORD_PLAINTEXT and room < free:
                self._make_room(free if free < MAX_RECORD_PLAINTEXT else MAX_RECORD_PLAINTEXT)
                end = self._end
                size = len(self._buf)
                room = size - end
            if free < room:  # noqa: PLR1730 -- min() is a call, this loop is hot
                room = free
            try:
                # At the start of the buffer (the usual case: the
                # application read all) the read needs no view of its own;
                # ``room`` bounds it.
                count = read_into(room, self._view[end : end + room] if end else self._view)
            except TLSError as exc:
                raise self._fail(exc) from None
            except conn.raw_read_errors as exc:
                try:
                    count = conn.read_error(exc)
                except TLSError as error:
                    raise self._fail(error) from None
            if count > 0:
                if not got:
                    # Announce the data before anything that follows it
                    # (a close_notify in the same batch, say).
                    events = self._events
                    if not events or events[-1] is not _DATA:
                        events.append(_DATA)
                end += count
                self._end = end
                got += count
                records += 1
                # A short read took a whole record; with nothing left in the
                # input, another call would only raise want-read.
                if count < room and not incoming.pending and not self._eof:
                    break
                continue
            if count == WANT_READ:
                break
            if count == CLOSED:
                self._on_close_notify()
                break
            if count == EOF:
                self._on_transport_eof()
                break
        if conn.blocked:
            try:
                conn.retry_blocked()
            except TLSError as exc:
                raise self._fail(exc) from None
        if watch and self._watch_tickets:
            self._watch_tickets = False
            # Reading the session is costly on the stdlib (a DER round
            # trip), so its arrival is inferred: the batch consumed more
            # than its data records account for (each TLS 1.3 data record
            # costs 22 bytes: header, inner type, AEAD tag), so it carried
            # handshake messages, and after the handshake those are tickets.
            consumed = before - incoming.pending
            if consumed > got + TLS13_RECORD_OVERHEAD * records:
                self._events.append(SessionTicket(loader=conn.session))

    def _make_room(self, want: int) -> None:
        used = self._end - self._start
        if self._start:
            # Between views one memmove (a bytearray's slice would be a
            # copy first), allowed while the view is exported.
            self._view[0:used] = self._view[self._start : self._end]
            self._start = 0
            self._end = used
        if len(self._buf) - used >= want:
            return
        size = max(INITIAL_BUFFER, 2 * len(self._buf), used + want)
        size = min(size, self._limit + MAX_RECORD_PLAINTEXT)
        grown = bytearray(size)
        view = memoryview(grown)
        view[:used] = self._view[:used]
        self._view.release()
        self._buf = grown
        self._view = view

    def _on_close_notify(self) -> None:
        self._recv_close = True
        self._refresh()
        self._watch_tickets = False
        self._events.append(CloseNotifyReceived())
        leftover = self._in.read()
        if leftover:
            self._trailing += leftover
        if self._unwrapping:
            self._finish_unwrap()

    def _on_transport_eof(self) -> None:
        if self._record_left or self._record_head or self._in.pending:
            if self._record_left:
                where = f"{self._record_left} bytes of its body never came"
            else:
                where = "its 5-byte header was cut"
            raise self._fail(
                RaggedEOFError(
                    "peer closed the connection in the middle of a TLS record "
                    f"({where}): data was cut off"
                )
            )
        if self._allow_ragged_eof:
            self._refresh()
            self._events.append(RaggedEOF())
            return
        raise self._fail(
            RaggedEOFError(
                "peer closed the connection without close_notify; the data may "
                "have been truncated (TLSConfig(allow_ragged_eof=True) accepts this)"
            )
        )

    # ------------------------------------------------------------------
    # The cleartext side, outbound

    def _write_cleartext(self, data: Buffer) -> int:
        if self._fast_write:
            size = len(data) if type(data) is bytes else memoryview(data).nbytes
            if size and self._out.pending + size <= self._limit:
                try:
                    self._raw_write(data)
                except TLSError as exc:
                    raise self._fail(exc) from None
                except self._raw_write_errors as exc:
                    raise self._fail(self._conn.write_error(exc)) from None
                return size
        elif not self._can_write:
            self._check("write")
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if not size:
            return 0
        if not self._handshake_done:
            if self._close_after_handshake:
                raise LocalProtocolError(
                    "cannot write to pair.cleartext: close() was called (it takes "
                    "effect when the handshake completes)"
                )
            room = self._limit - self._queued_size
            if room <= 0:
                raise BufferFullError(
                    "cleartext queued before the handshake exceeds the buffer limit",
                    buffer="cleartext",
                    limit=self._limit,
                )
            accepted = min(size, room)
            # Cast to bytes first: slicing an array('H') counts items.
            self._queued.append(bytes(memoryview(data).cast("B")[:accepted]))
            self._queued_size += accepted
            return accepted
        room = self._limit - self._out.pending
        if room <= 0:
            raise BufferFullError(
                "encrypted output is not being sent: read pair.encrypted first",
                buffer="encrypted",
                limit=self._limit,
            )
        if size > room:
            data = memoryview(data).cast("B")[:room]
            size = room
        try:
            self._conn.write(data)
        except TLSError as exc:
            raise self._fail(exc) from None
        return size

    def _encrypt(self, data: Buffer) -> None:
        try:
            self._conn.write(data)
        except TLSError as exc:
            raise self._fail(exc) from None

    # ------------------------------------------------------------------
    # The cleartext side, inbound

    def _read_cleartext(self, n: int = -1) -> bytes:
        start = self._start
        end = self._end
        if start == end:
            if self._deferred_error is not None:
                self._raise_deferred()
            return b""
        if n < 0 or n >= end - start:
            self._start = self._end = 0
        else:
            end = start + n
            self._start = end
        data = bytes(self._view[start:end])
        if self._throttled and self._error is None:
            self._pump_after_read()
        return data

    def _readinto_cleartext(self, buffer: Buffer) -> int:
        start = self._start
        end = self._end
        # Through a memoryview: a bytearray's own slice assignment copies a
        # non-bytearray value into a new bytearray first.  Any buffer is
        # seen as bytes (slicing an array('H') would count items).
        target = memoryview(buffer) if type(buffer) is bytearray else memoryview(buffer).cast("B")
        count = end - start
        room = len(target)
        if room < count:  # noqa: PLR1730 -- min() is a call; a read per record
            count = room
        if not count:
            if self._deferred_error is not None and end == start:
                self._raise_deferred()
            return 0
        target[:count] = self._view[start : start + count]
        start += count
        if start == end:
            self._start = self._end = 0
        else:
            self._start = start
        if self._throttled and self._error is None:
            self._pump_after_read()
        return count

    def _pump_after_read(self) -> None:
        """Decrypt what waited for room.  If that fails (a bad record, a
        ragged EOF behind the data), the bytes this read already took out of
        the buffer were decrypted before the failure: the read returns them,
        and the error is raised by the first read that finds nothing left."""
        try:
            self._pump_in()
        except SecurePairError as exc:
            self._deferred_error = exc

    def _raise_deferred(self) -> None:
        error, self._deferred_error = self._deferred_error, None
        assert error is not None
        try:
            raise error
        finally:
            del error  # see _check_first_bytes

    # ------------------------------------------------------------------
    # Closing

    def close(self) -> None:
        """Send close_notify (Node's ``cleartext.end()``).

        Does not wait for the peer's close_notify: its arrival is the
        :class:`~securepair.events.CloseNotifyReceived` event.  The peer may
        still send data until then (TLS 1.3 half-close).  Before the
        handshake completes, the close is sent right after it.  Calling it
        again does nothing.
        """
        self._check("close")
        if self._error is not None or self._unwrapped or self._sent_close or self._eof:
            return
        if not self._handshake_done:
            self._close_after_handshake = True
            return
        self._send_close_notify()

    def _send_close_notify(self) -> None:
        try:
            self._conn.send_close_notify()
        except TLSError as exc:
            raise self._fail(exc) from None
        self._sent_close = True
        self._refresh()

    def unwrap(self) -> bytes | None:
        """Return to plaintext: exchange close_notify and hand back what follows.

        Sends our close_notify if not yet sent.  If the peer's close_notify
        has already arrived, the pair is now UNWRAPPED and the bytes that
        followed it are returned; otherwise returns ``None`` and the
        :class:`~securepair.events.Unwrapped` event reports completion when
        the peer's close_notify is fed in.
        """
        self._check("unwrap")
        if not self._sent_close:
            self._send_close_notify()
        self._unwrapping = True
        if self._recv_close:
            return self._finish_unwrap()
        return None

    def _finish_unwrap(self) -> bytes:
        trailing = bytes(self._trailing)
        if not self._unwrapped:
            self._unwrapped = True
            self._refresh()
            self._events.append(Unwrapped(trailing_data=trailing))
        return trailing

    @property
    def trailing_data(self) -> bytes:
        """Bytes fed to the encrypted side that are not TLS: what followed
        the peer's close_notify, or what TLS had not consumed when the pair
        failed."""
        return bytes(self._trailing)

    @property
    def bytes_received(self) -> int:
        """Bytes accepted by ``pair.encrypted.write()`` so far."""
        return self._bytes_received

    def renegotiate(self) -> None:
        """Start a TLS 1.2 renegotiation, Node's ``renegotiate()``.

        pyOpenSSL backend with ``allow_renegotiation=True`` only; the new
        handshake runs as bytes flow.  TLS 1.3 has no renegotiation.
        """
        conn = self._details("renegotiate")
        if self.state is not _S.OPEN:
            raise LocalProtocolError(f"cannot renegotiate in state {self.state.value}")
        if conn.version() != "TLSv1.2":
            raise LocalProtocolError(
                f"renegotiation exists only in TLS 1.2; this connection is {conn.version()}"
            )
        try:
            conn.renegotiate()
        except TLSError as exc:
            raise self._fail(exc) from None

    def disable_renegotiation(self) -> None:
        """Refuse any further renegotiation, Node's ``disableRenegotiation()``
        (pyOpenSSL backend; the stdlib backend always refuses)."""
        if self.backend == "stdlib":
            return
        self._conn.disable_renegotiation()

    def export_keying_material(
        self, label: bytes | str, length: int, context: bytes | None = None
    ) -> bytes:
        """Derive ``length`` bytes from the session secrets (RFC 5705,
        RFC 8446 7.5); both sides get the same bytes for the same label and
        context.  pyOpenSSL backend."""
        conn = self._details("export_keying_material")
        if isinstance(label, str):
            label = label.encode("ascii")
        return conn.export_keying_material(label, length, context)

    def finished(self) -> tuple[bytes | None, bytes | None]:
        """(our Finished, the peer's Finished) verify_data.  pyOpenSSL backend."""
        return self._details("finished").finished()

    def channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """Channel binding data: ``"tls-unique"`` (RFC 5929, TLS 1.2 only;
        ``None`` on TLS 1.3) or ``"tls-exporter"`` (RFC 9266, pyOpenSSL)."""
        conn = self._details("channel_binding")
        if cb_type == "tls-unique":
            return conn.tls_unique()
        if cb_type == "tls-exporter":
            return conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
        raise ValueError(f"unknown channel binding type {cb_type!r}")

    # ------------------------------------------------------------------
    # Details, available once the handshake is complete

    def _details(self, what: str) -> TLSConnection:
        if not self._handshake_done:
            raise HandshakeNotCompleteError(
                f"{what} is not known before the TLS handshake completes"
            )
        return self._conn

    def _recorded(self, what: str) -> HandshakeComplete | None:
        """The HandshakeComplete event if the pair has failed since, else
        None.  After a failure OpenSSL's state machine is in its error
        state and no longer answers some questions (the stdlib raises
        ValueError "handshake not done yet", or gives "" for the version);
        what the handshake settled is then told from the event."""
        self._details(what)
        return self._handshake_event if self._error is not None else None

    @property
    def handshake_complete(self) -> bool:
        """True once the handshake has completed."""
        return self._handshake_done

    @property
    def version(self) -> str:
        """Negotiated protocol version: ``"TLSv1.2"`` or ``"TLSv1.3"``."""
        recorded = self._recorded("version")
        if recorded is not None:
            return recorded.version
        return self._conn.version()

    @property
    def cipher(self) -> str:
        """Negotiated cipher suite, OpenSSL name."""
        return self._details("cipher").cipher()[0]

    def cipher_info(self) -> tuple[str, str, int]:
        """(cipher name, protocol, secret bits), like ``SSLSocket.cipher()``."""
        return self._details("cipher").cipher()

    @property
    def alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on, or ``None``."""
        return self._details("alpn_protocol").alpn_protocol()

    @property
    def server_name(self) -> str | None:
        """SNI host name: requested by the client (server side) or sent
        (client side)."""
        return self._details("server_name").server_name()

    @property
    def authorized(self) -> bool:
        """True if the peer's certificate verified (Node's ``authorized``)."""
        recorded = self._recorded("authorized")
        if recorded is not None:
            return recorded.authorized
        return self._conn.verification()[0]

    @property
    def authorization_error(self) -> str | None:
        """Why the peer is not authorized, as Node names it, or ``None``."""
        recorded = self._recorded("authorization_error")
        if recorded is not None:
            return recorded.authorization_error
        return self._conn.verification()[1]

    def peer_certificate(self, detailed: bool = False) -> PeerCertificate | None:
        """The peer's certificate as a Node-style dict, or ``None`` if it sent
        none.  With ``detailed=True``, the chain is linked through
        ``issuerCertificate`` where the backend can give it (Node's
        ``getPeerCertificate(true)``)."""
        conn = self._details("peer_certificate")
        der = self.peer_certificate_der()
        if der is None:
            return None
        if detailed and self._error is None:
            chain = conn.peer_chain_der()
            if chain:
                return node_certificate_chain(chain)
        return node_certificate(der)

    def peer_certificate_der(self) -> bytes | None:
        """The peer's certificate in DER, or ``None``."""
        recorded = self._recorded("peer_certificate")
        if recorded is not None:
            return recorded.peer_certificate_der
        return self._conn.peer_certificate_der()

    @property
    def session(self) -> Any:
        """The session, to pass as ``session=`` when reconnecting."""
        return self._details("session").session()

    @property
    def session_reused(self) -> bool:
        """True if this handshake resumed an earlier session."""
        return self._details("session_reused").session_reused()

    @property
    def handshake_event(self) -> HandshakeComplete:
        """The :class:`~securepair.events.HandshakeComplete` event again."""
        self._details("handshake_event")
        assert self._handshake_event is not None
        return self._handshake_event

    def __repr__(self) -> str:
        role = "server" if self.server_side else "client"
        return f"<SecurePair {role} {self.backend} {self.state.value}>"


class _Side:
    """What the two sides share.

    The pair makes a side when asked and holds it weakly (see
    ``SecurePair.__init__``): the same object comes back while anyone holds
    it.  An attribute an application sets on a side is also kept on the
    pair while the connection lasts, so a side made later has it too.
    """

    #: The pair's property that makes this side.
    _name = ""
    _pair: SecurePair

    # Each subclass's __init__ binds its hot calls straight to the code
    # that does the work (no extra Python frame per call; the methods of
    # the subclasses document them), then calls _restore if the pair kept
    # attributes.  __dict__ is filled directly: __setattr__ is the
    # application's.

    def _restore(self) -> None:
        kept = self._pair._side_attributes
        if kept is not None and self._name in kept:
            self.__dict__.update(kept[self._name])

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        pair = self._pair
        if pair._side_attributes is None:
            pair._side_attributes = {}
        pair._side_attributes.setdefault(self._name, {})[name] = value

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        kept = self._pair._side_attributes
        if kept is not None:
            kept.get(self._name, {}).pop(name, None)


class EncryptedSide(_Side):
    """The network side of a pair: bytes from the peer in, bytes to it out."""

    _name = "encrypted"

    def __init__(self, pair: SecurePair) -> None:
        fields = self.__dict__
        fields["_pair"] = pair
        fields["write"] = pair._feed
        fields["read"] = pair._out.read
        if pair._side_attributes is not None:
            self._restore()

    def write(self, data: Buffer) -> int:
        """Feed bytes received from the network; returns how many were taken.

        ``write(b"")`` means the transport ended (as :meth:`write_eof`).
        Fewer than ``len(data)`` bytes are taken only when the input buffer
        is at its limit; keep the rest and offer it again after reading
        ``pair.cleartext``.  Raises :class:`~securepair.errors.BufferFullError`
        if nothing could be taken.
        """
        return self._pair._feed(data)

    def write_eof(self) -> None:
        """The transport ended: EOF from the network."""
        self._pair._feed_eof()

    def read(self, n: int = -1) -> bytes:
        """Remove and return up to ``n`` bytes to send (all if ``n < 0``);
        ``b""`` if there is nothing to send."""
        return self._pair._out.read(n)

    @property
    def pending(self) -> int:
        """Bytes waiting to be sent to the network."""
        return self._pair._out.pending


class CleartextSide(_Side):
    """The application side of a pair: data to protect in, peer's data out."""

    _name = "cleartext"

    def __init__(self, pair: SecurePair) -> None:
        fields = self.__dict__
        fields["_pair"] = pair
        fields["write"] = pair._write_cleartext
        fields["read"] = pair._read_cleartext
        if pair._side_attributes is not None:
            self._restore()

    def write(self, data: Buffer) -> int:
        """Encrypt ``data`` for the peer; returns how many bytes were taken.

        Before the handshake completes, data is queued and sent after it.
        Fewer bytes are taken only when the output buffer is at its limit;
        :class:`~securepair.errors.BufferFullError` if none could be.
        """
        return self._pair._write_cleartext(data)

    def read(self, n: int = -1) -> bytes:
        """Remove and return up to ``n`` decrypted bytes (all if ``n < 0``);
        ``b""`` if none are waiting."""
        return self._pair._read_cleartext(n)

    def readinto(self, buffer: Buffer) -> int:
        """Copy decrypted bytes into ``buffer``; returns how many (0 if none).
        Saves the allocation of a new ``bytes``, not a copy."""
        return self._pair._readinto_cleartext(buffer)

    @property
    def pending(self) -> int:
        """Decrypted bytes waiting to be read."""
        return self._pair._end - self._pair._start

    def end(self) -> None:
        """Node's ``cleartext.end()``: the same as :meth:`SecurePair.close`."""
        self._pair.close()
