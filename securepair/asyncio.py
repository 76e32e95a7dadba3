"""TLS over any asyncio transport: a protocol under, a transport above.

Theory of operation
===================

:class:`TLSProtocol` is a ``BufferedProtocol`` set on a plain transport (a
TCP connection, a pipe, another TLS transport, uvloop's transports).  The
transport reads into the protocol's one reusable buffer
(:data:`~securepair._adapters.RECV_SIZE` bytes); every read is fed to a
:class:`~securepair.SecurePair` at once, which decrypts every complete
record it holds.  The application sees a :class:`TLSTransport` and its own
protocol, exactly as with asyncio's ``ssl=``: ``data_received`` (or
``get_buffer``/``buffer_updated`` for a buffered application protocol) with
the cleartext, ``eof_received`` when the peer's close_notify arrives,
``connection_lost`` at the end.  What the pair has to send goes to the plain
transport after every input and every write.

Entry points
------------
* :func:`open_connection` and :func:`start_server` take asyncio's arguments
  plus ``config=`` and return asyncio's streams.
* :func:`start_tls` upgrades an open transport, like ``loop.start_tls``, but
  takes ``initial_data=``: bytes the old protocol already received that
  belong to TLS.  The protocol switch happens before the first ``await``, so
  no byte that arrives afterwards can go to the old protocol.
* :func:`upgrade_streams` does the same for a ``StreamReader`` /
  ``StreamWriter`` pair and takes the bytes still in the reader's buffer as
  TLS input.  asyncio's own ``StreamWriter.start_tls`` leaves them behind,
  so a ClientHello that arrived in the same segment as a PROXY header or a
  STARTTLS command is lost and the handshake hangs (cpython gh-142352).
* :meth:`TLSTransport.unwrap` and :func:`unwrap_streams` go back to plaintext
  and return the bytes that followed the peer's close_notify.

Flow control
------------
Writes: the cleartext is encrypted as it is written and handed to the plain
transport, whose write-buffer limits are set to this transport's (asyncio's
TLS defaults: 512 KiB high, 128 KiB low); when the plain transport pauses
us, the application's protocol is paused, and resumed with it.  Writes made
before the handshake completes are kept here and count too.

Reads: while the application has paused reading, decrypted bytes wait in the
pair; above the read high-water mark (256 KiB) the plain transport stops
reading, and it resumes below the low-water mark (64 KiB).  Ciphertext the
pair cannot take (its own buffers are bounded) waits here and also stops
the reading.

Closing and timeouts
--------------------
``close()`` sends close_notify after the pending data and waits for the
peer's close_notify (or EOF) before closing the plain transport, so a reply
in flight does not turn into a reset; after ``ssl_shutdown_timeout`` seconds
it closes without waiting.  A handshake that does not finish within
``ssl_handshake_timeout`` seconds fails with ``TimeoutError``.  When TLS
fails, the alert is sent, the write side shut down, and the input read and
dropped for a moment (:data:`~securepair._adapters.ALERT_DRAIN_TIMEOUT`)
before the plain transport closes; the application gets the error at once.
A peer's close_notify is a clean EOF; TLS 1.3 half-close works both ways
(``write_eof()`` sends close_notify and reading goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from ._adapters import (
    ALERT_DRAIN_LIMIT,
    ALERT_DRAIN_TIMEOUT,
    RECV_SIZE,
    Buffer,
    TLSDetails,
    ssl_compatible,
    stdlib_context_of,
)
from .config import TLSConfig
from .errors import LocalProtocolError, RaggedEOFError, SecurePairError
from .pair import PairState, SecurePair, _detached_copy

__all__ = [
    "TLSProtocol",
    "TLSTransport",
    "open_connection",
    "start_server",
    "start_tls",
    "unwrap_streams",
    "upgrade_streams",
]

logger = logging.getLogger("securepair.asyncio")

#: asyncio's defaults (``asyncio.constants``): seconds.
SSL_HANDSHAKE_TIMEOUT = 60.0
SSL_SHUTDOWN_TIMEOUT = 30.0

#: Read-side water marks, asyncio's TLS defaults: decrypted bytes the
#: application has not taken before the plain transport stops reading.
READ_HIGH_WATER = 256 * 1024
#: Write-side water marks, asyncio's TLS defaults.
WRITE_HIGH_WATER = 512 * 1024

#: Largest piece of a write encrypted at once (16 full records): the
#: ciphertext of each piece goes to the transport as one ``bytes`` small
#: enough for the allocator to recycle, rather than one object as large
#: as the write.
WRITE_CHUNK = 256 * 1024

#: Writes after the connection is lost are dropped, as asyncio does; this
#: many are dropped silently before a warning is logged.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_DONE_READING = frozenset({PairState.PEER_CLOSED, PairState.CLOSED, PairState.UNWRAPPED})
_CAN_CLOSE = frozenset({PairState.OPEN, PairState.PEER_CLOSED})
_OPEN = PairState.OPEN
_CLOSING = PairState.CLOSING


def _receiving(state: PairState) -> bool:
    """The peer may still send data (identity tests: hashing an enum member
    for a set lookup costs a Python call)."""
    return state is _OPEN or state is _CLOSING


Config = TLSConfig | ssl.SSLContext | Any


def _is_unwrapped(pair: SecurePair) -> bool:
    return pair.state is PairState.UNWRAPPED


def _limits(high: int | None, low: int | None, default_high: int) -> tuple[int, int]:
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


#: Stands in for the application's protocol once the connection is lost
#: (the real one is then held weakly): every callback does nothing.
_GONE = asyncio.Protocol()


class TLSProtocol(asyncio.BufferedProtocol):
    """The protocol on the plain transport: runs TLS between it and the
    application's protocol, which sees :attr:`app_transport`.

    Made by the functions of this module; make one directly to layer TLS
    over a transport you create yourself (pass the factory to
    ``loop.create_connection``).  ``waiter`` (a future) gets the result of
    the handshake.  With ``call_connection_made=False`` (the
    :func:`start_tls` case) the application's ``connection_made`` is not
    called: the caller hands it the transport.  ``pair=`` adopts a pair made
    elsewhere (a STARTTLS negotiator's ``start_tls()``) instead of making
    one from ``config``.
    """

    def __init__(
        self,
        app_protocol: asyncio.BaseProtocol,
        config: Config,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: Any = None,
        initial_data: Buffer = b"",
        waiter: asyncio.Future[None] | None = None,
        call_connection_made: bool = True,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        pair: SecurePair | None = None,
    ) -> None:
        if ssl_handshake_timeout is None:
            ssl_handshake_timeout = SSL_HANDSHAKE_TIMEOUT
        elif ssl_handshake_timeout <= 0:
            raise ValueError(
                f"ssl_handshake_timeout should be a positive number, got {ssl_handshake_timeout}"
            )
        if ssl_shutdown_timeout is None:
            ssl_shutdown_timeout = SSL_SHUTDOWN_TIMEOUT
        elif ssl_shutdown_timeout <= 0:
            raise ValueError(
                f"ssl_shutdown_timeout should be a positive number, got {ssl_shutdown_timeout}"
            )
        self._loop = asyncio.get_running_loop()
        self.config = config
        self.server_side = server_side
        if pair is None:
            pair = SecurePair(
                config, server_side=server_side, server_hostname=server_hostname, session=session
            )
        elif pair.server_side != server_side:
            raise ValueError("pair= was made for the other side (server_side differs)")
        self.pair = pair
        self._cleartext = self.pair.cleartext
        self._encrypted = self.pair.encrypted
        # The hot calls, bound once.
        self._ct_write = self._cleartext.write
        self._ct_read = self._cleartext.read
        self._enc_write = self._encrypted.write
        self._enc_read = self._encrypted.read
        #: True while input can take the short path (handshake done, data
        #: goes straight to a reading data_received protocol, nothing held
        #: back, nothing ending) and output likewise; see _refresh().
        self._fast_in = False
        self._fast_out = False
        self._initial_data = bytes(initial_data)
        self._initial_eof = False
        self._waiter = waiter
        self._call_connection_made = call_connection_made
        self._handshake_timeout = ssl_handshake_timeout
        self._shutdown_timeout = ssl_shutdown_timeout
        self._app_protocol = app_protocol
        self._app_protocol_ref: weakref.ref[asyncio.BaseProtocol] | None = None
        self._app_buffered = isinstance(app_protocol, asyncio.BufferedProtocol)
        self._app_transport: TLSTransport | None = TLSTransport(self)
        self._app_transport_ref: weakref.ref[TLSTransport] | None = None
        self._transport: asyncio.Transport | None = None
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._handshake_done = False
        self._app_connected = False
        self._app_lost = False
        self._app_reading = True
        self._raw_paused = False
        self._raw_stopped = False
        self._raw_eof = False
        self._eof_delivered = False
        self._closing = False
        self._eof_written = False
        self._detached = False
        self._draining = 0
        self._error: BaseException | None = None
        self._in_backlog = b""
        self._in_eof_pending = False
        self._out_backlog: list[bytes] = []
        self._out_backlog_size = 0
        self._raw_write_paused = False
        self._app_write_paused = False
        self._read_high, self._read_low = _limits(None, None, READ_HIGH_WATER)
        self._write_high, self._write_low = _limits(None, None, WRITE_HIGH_WATER)
        self._conn_lost_writes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._unwrap_waiter: asyncio.Future[None] | None = None

    def _refresh(self) -> None:
        """Recompute the short-path flags; called after every change of
        the facts they depend on."""
        usable = (
            self._handshake_done
            and self._transport is not None
            and self._error is None
            and not (self._closing or self._detached or self._draining or self._app_lost)
        )
        self._fast_out = usable and not self._eof_written
        self._fast_in = (
            usable
            and self._app_connected
            and self._app_reading
            and not self._app_buffered
            and not (self._in_backlog or self._eof_delivered or self._raw_stopped)
            and self._unwrap_waiter is None
        )

    # ------------------------------------------------------------------
    # Callbacks from the plain transport

    @property
    def app_transport(self) -> TLSTransport:
        """The transport the application uses."""
        app_transport = self._app_transport
        if app_transport is None:
            # Lost, and held weakly since (see _release()).
            assert self._app_transport_ref is not None
            app_transport = self._app_transport_ref()
            if app_transport is None:
                # Nobody kept it: a new one over the same, closed, state.
                app_transport = TLSTransport(self)
                self._app_transport_ref = weakref.ref(app_transport)
        return app_transport

    def _release(self) -> None:
        """The connection is gone: drop what it no longer needs, and the
        references that would make this protocol, its transport and the
        application's protocol a cycle.  Cycles wait for Python's full
        collection, which a busy server runs rarely; this way a finished
        connection, its 256 KiB receive buffer and its OpenSSL state are
        freed as soon as the application lets go of them."""
        self._rbuf = bytearray()
        self._rview = memoryview(self._rbuf)
        self._in_backlog = b""
        self._out_backlog = []
        self._waiter = None
        self._unwrap_waiter = None
        if isinstance(self._error, SecurePairError):
            # Its traceback holds frames that hold this protocol.
            self._error = _detached_copy(self._error)
        if self._app_transport is not None:
            self._app_transport_ref = weakref.ref(self._app_transport)
            self._app_transport = None
        with contextlib.suppress(TypeError):  # a protocol without __weakref__
            self._app_protocol_ref = weakref.ref(self._app_protocol)
            self._app_protocol = _GONE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake on ``transport``."""
        # uvloop's transports have the interface without the base class.
        self._transport = transport = cast("asyncio.Transport", transport)
        with contextlib.suppress(NotImplementedError):
            transport.set_write_buffer_limits(self._write_high, self._write_low)
        self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        initial = self._initial_data
        self._initial_data = b""
        if initial and not self._feed(memoryview(initial)):
            return
        if self._initial_eof:
            self.eof_received()
            return
        if self._encrypted.pending:
            transport.write(self._encrypted.read())

    def get_buffer(self, sizehint: int) -> memoryview:
        """The reusable read buffer."""
        return self._rview

    def buffer_updated(self, nbytes: int) -> None:
        """Feed ``nbytes`` new bytes to TLS and pass on what comes out."""
        if self._fast_in:
            # The short path: everything decrypted goes to data_received.
            try:
                taken = self._enc_write(self._rview[:nbytes])
            except SecurePairError as exc:
                self._fatal(exc)
                return
            out = self._enc_read()
            if out:
                self._transport.write(out)  # type: ignore[union-attr]
            if taken == nbytes:
                data = self._ct_read()
                if data:
                    self._app_protocol.data_received(data)  # type: ignore[attr-defined]
                if self._fast_in and _receiving(self.pair.state):
                    return
            else:
                self._in_backlog = bytes(self._rview[taken:nbytes])
            self._pump()
            self._refresh()
            return
        if self._draining:
            self._draining += nbytes
            if self._draining > ALERT_DRAIN_LIMIT:
                self._drain_done()
            return
        if self._detached or self._error is not None:
            return
        if self._feed(self._rview[:nbytes]):
            self._pump()
        self._refresh()

    def eof_received(self) -> bool:
        """The peer closed its side; without close_notify that is a ragged
        EOF.  Returns True: this protocol closes the transport itself."""
        self._raw_eof = True
        if self._draining:
            self._drain_done()
            return True
        if self._detached or self._error is not None:
            return True
        if self._in_backlog:
            self._in_eof_pending = True
            return True
        try:
            self._encrypted.write_eof()
        except SecurePairError as exc:
            self._fatal(exc)
            return True
        self._pump()
        if self._closing and not self._detached:
            self._close_raw()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """The plain transport is closed: tell whoever waits, and the app."""
        self._cancel_timer()
        transport_error = exc
        if self._error is not None:
            exc = self._error  # type: ignore[assignment]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                exc or ConnectionResetError("the connection was closed during the TLS handshake")
            )
        unwrap = self._unwrap_waiter
        if unwrap is not None and not unwrap.done():
            unwrap.set_exception(
                exc
                or ConnectionResetError("the connection was closed before the peer's close_notify")
            )
        if self._app_connected and not self._app_lost and not self._detached:
            self._app_lost = True
            self._refresh()
            self._app_protocol.connection_lost(exc if exc is not None else transport_error)
        self._transport = None
        self._refresh()
        self._release()

    def pause_writing(self) -> None:
        """The plain transport's buffer is full: pause the application."""
        self._raw_write_paused = True
        self._control_app_writing()

    def resume_writing(self) -> None:
        """The plain transport's buffer drained: resume the application."""
        self._raw_write_paused = False
        self._control_app_writing()

    # ------------------------------------------------------------------
    # Input

    def _feed(self, data: memoryview) -> bool:
        """Feed ciphertext to the pair and send what it answers; False if
        TLS failed."""
        try:
            taken = self._encrypted.write(data)
        except SecurePairError as exc:
            self._fatal(exc)
            return False
        if taken < len(data):
            self._in_backlog = bytes(data[taken:])
            self._refresh()
        transport = self._transport
        assert transport is not None
        if self._encrypted.pending:
            transport.write(self._encrypted.read())
        if not self._handshake_done and self.pair.handshake_complete:
            self._on_handshake_complete()
        return True

    def _pump(self) -> None:
        """Give the application what the pair holds, as far as it lets us;
        then feed held-back ciphertext and notice the end of the stream."""
        try:
            self._pump_slow()
        finally:
            self._refresh()

    def _pump_slow(self) -> None:
        cleartext = self._cleartext
        while True:
            if cleartext.pending:
                if self._closing:
                    cleartext.read()  # the application closed: drop
                elif self._app_reading and self._app_connected and not self._app_lost:
                    self._deliver()
            backlog = self._in_backlog
            if backlog and cleartext.pending < self._read_high and self._error is None:
                self._in_backlog = b""
                if not self._feed(memoryview(backlog)):
                    return
                continue
            break
        if self._error is not None or self._detached or self._transport is None:
            return
        if self._in_eof_pending and not self._in_backlog:
            self._in_eof_pending = False
            self.eof_received()
            return
        self._control_raw_reading()
        if (
            not self._eof_delivered
            and (not cleartext.pending or self._closing)
            and self.pair.state in _DONE_READING
        ):
            self._on_peer_closed()

    def _deliver(self) -> None:
        cleartext = self._cleartext
        app = self._app_protocol
        if self._app_buffered:
            while cleartext.pending and self._app_reading and not self._closing:
                buffer = app.get_buffer(cleartext.pending)  # type: ignore[attr-defined]
                count = cleartext.readinto(buffer)
                if not count:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                app.buffer_updated(count)  # type: ignore[attr-defined]
        else:
            while cleartext.pending and self._app_reading and not self._closing:
                app.data_received(cleartext.read())  # type: ignore[attr-defined]

    def _control_raw_reading(self) -> None:
        transport = self._transport
        if transport is None or self._raw_stopped:
            return
        size = self._cleartext.pending + len(self._in_backlog)
        if not self._raw_paused:
            if self._in_backlog or size > self._read_high:
                self._raw_paused = True
                transport.pause_reading()
        elif size <= self._read_low and not self._in_backlog:
            self._raw_paused = False
            transport.resume_reading()

    def _stop_raw_reading(self) -> None:
        """Read no more: what follows the peer's close_notify is not TLS,
        and stays in the kernel for whoever takes the connection next."""
        if not self._raw_stopped and self._transport is not None:
            self._raw_stopped = True
            self._refresh()
            if not self._raw_paused:
                self._raw_paused = True
                self._transport.pause_reading()

    def _on_handshake_complete(self) -> None:
        self._handshake_done = True
        self._cancel_timer()
        if self._out_backlog:
            backlog, self._out_backlog = self._out_backlog, []
            self._out_backlog_size = 0
            for chunk in backlog:
                if not self._write(chunk):
                    return
        if self._eof_written and self.pair.state in _CAN_CLOSE:
            self._close_notify()
        transport = self._transport
        assert transport is not None
        if self._encrypted.pending:
            transport.write(self._encrypted.read())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._app_connected = True
        self._refresh()
        if self._call_connection_made:
            self._app_protocol.connection_made(self.app_transport)
        self._control_app_writing()

    def _on_peer_closed(self) -> None:
        """The peer's close_notify (or an accepted ragged EOF) arrived and
        the application has every byte before it."""
        self._eof_delivered = True
        self._refresh()
        self._stop_raw_reading()
        unwrap = self._unwrap_waiter
        if unwrap is not None:
            if self.pair.state is PairState.UNWRAPPED and not unwrap.done():
                unwrap.set_result(None)
            return
        if self._closing:
            self._close_raw()
            return
        if not self._app_connected:
            return
        keep_open = self._app_protocol.eof_received()  # type: ignore[attr-defined]
        if not keep_open:
            self.app_transport.close()

    # ------------------------------------------------------------------
    # Output

    def _write(self, data: Buffer) -> bool:
        """Encrypt ``data`` and pass it to the plain transport; False if TLS
        failed."""
        write = self._cleartext.write
        encrypted = self._encrypted
        transport = self._transport
        assert transport is not None
        try:
            size = len(data) if type(data) is bytes else memoryview(data).nbytes
            if size <= WRITE_CHUNK:
                taken = write(data)
            else:
                taken = 0
            if taken < size:
                view = memoryview(data).cast("B")
                while taken < size:
                    taken += write(view[taken : taken + WRITE_CHUNK])
                    if taken < size:
                        transport.write(encrypted.read())
        except SecurePairError as exc:
            self._fatal(exc)
            return False
        transport.write(encrypted.read())
        return True

    def _close_notify(self) -> bool:
        """Send close_notify; False if TLS failed."""
        try:
            self.pair.close()
        except SecurePairError as exc:
            self._fatal(exc)
            return False
        if self._transport is not None and self._encrypted.pending:
            self._transport.write(self._encrypted.read())
        return True

    def _get_write_buffer_size(self) -> int:
        size = self._out_backlog_size
        if self._transport is not None:
            size += self._transport.get_write_buffer_size()
        return size

    def _control_app_writing(self) -> None:
        if not self._app_connected or self._app_lost:
            return
        if not self._app_write_paused:
            if self._raw_write_paused or self._out_backlog_size > self._write_high:
                self._app_write_paused = True
                self._app_protocol.pause_writing()
        elif not self._raw_write_paused and self._out_backlog_size <= self._write_low:
            self._app_write_paused = False
            self._app_protocol.resume_writing()

    # ------------------------------------------------------------------
    # Ends: close, timeouts, failure

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._refresh()
        transport = self._transport
        if transport is None or self._error is not None or self._detached:
            return
        if not self._handshake_done:
            self._cancel_timer()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ConnectionAbortedError("the transport was closed during the TLS handshake")
                )
            transport.close()
            return
        if self.pair.state in _CAN_CLOSE and not self._close_notify():
            return
        if self._eof_delivered or self._raw_eof or self.pair.state is PairState.CLOSED:
            self._close_raw()
            return
        # Wait for the peer's close_notify, reading (and dropping) what
        # comes before it; without it, the peer's last bytes would meet a
        # closed socket and turn into a reset.
        self._cancel_timer()
        self._timer = self._loop.call_later(self._shutdown_timeout, self._shutdown_timed_out)
        if self._raw_paused and not self._raw_stopped:
            self._raw_paused = False
            transport.resume_reading()
        self._pump()

    def _close_raw(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        logger.debug("%r: no close_notify from the peer in time; closing", self)
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._handshake_done or self._transport is None:
            return
        error = TimeoutError(
            f"TLS handshake did not complete within {self._handshake_timeout} seconds"
        )
        self._error = error
        self._refresh()
        self._report(error)
        self._transport.abort()

    def _fatal(self, exc: BaseException) -> None:
        """TLS failed: send the alert, shut down the write side, drain the
        input briefly, then close; the application hears of it at once."""
        if isinstance(exc, SecurePairError) and not isinstance(exc, LocalProtocolError):
            exc = ssl_compatible(exc)
        if self._error is not None:
            return
        self._error = exc
        self._refresh()
        self._cancel_timer()
        transport = self._transport
        if transport is not None:
            alert = self._encrypted.read()
            if alert:
                transport.write(alert)
            if self._raw_eof or isinstance(exc, RaggedEOFError):
                transport.close()
            else:
                try:
                    if transport.can_write_eof():
                        transport.write_eof()
                except (OSError, RuntimeError, NotImplementedError):
                    pass
                self._draining = 1
                self._refresh()
                if self._raw_paused:
                    self._raw_paused = self._raw_stopped = False
                    transport.resume_reading()
                self._timer = self._loop.call_later(ALERT_DRAIN_TIMEOUT, self._drain_done)
        self._report(exc)

    def _drain_done(self) -> None:
        self._cancel_timer()
        self._draining = 0
        transport = self._transport
        if transport is not None:
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    def _report(self, error: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif not self._app_connected:
            logger.debug("TLS handshake failed on %r: %s", self, error)
        unwrap = self._unwrap_waiter
        if unwrap is not None and not unwrap.done():
            unwrap.set_exception(error)
        if self._app_connected and not self._app_lost:
            self._app_lost = True
            self._refresh()
            self._loop.call_soon(self._app_protocol.connection_lost, error)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        role = "server" if self.server_side else "client"
        return f"<securepair.asyncio.TLSProtocol {role} {self.pair.state.value}>"


class TLSTransport(TLSDetails, asyncio.Transport):
    """The transport the application's protocol sees: an asyncio
    ``Transport`` whose bytes are encrypted, with the connection's TLS
    details (``version()``, ``cipher()``, ``getpeercert()``,
    ``authorized``, ``peer_certificate()``, the pair's events...).

    ``get_extra_info`` answers asyncio's TLS keys (``"ssl_object"`` is this
    transport, which has ``SSLObject``'s detail methods; ``"peercert"``,
    ``"cipher"``, ``"compression"``, ``"sslcontext"``), ``"securepair"``
    (the pair), and passes every other key to the plain transport
    (``"peername"``, ``"socket"``...).
    """

    def __init__(self, protocol: TLSProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        self.pair = protocol.pair

    # -- the plain transport and the protocols -------------------------------

    @property
    def transport(self) -> asyncio.Transport | None:
        """The plain transport underneath (``None`` once it is closed)."""
        return self._protocol._transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's TLS keys, ``"securepair"``, then the plain transport's."""
        protocol = self._protocol
        if name == "ssl_object":
            return self
        if name == "sslcontext":
            return stdlib_context_of(protocol.config, protocol.server_side)
        if name == "securepair":
            return self.pair
        if name in ("peercert", "cipher", "compression"):
            if not self.pair.handshake_complete:
                return default
            if name == "peercert":
                return self.getpeercert()
            if name == "cipher":
                return self.cipher()
            return None
        transport = protocol._transport
        if transport is None:
            return default
        return transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Give the cleartext to another protocol from now on."""
        self._protocol._app_protocol = protocol
        self._protocol._app_buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._protocol._refresh()

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The application's protocol."""
        protocol = self._protocol
        if protocol._app_protocol is _GONE and protocol._app_protocol_ref is not None:
            return protocol._app_protocol_ref() or _GONE
        return protocol._app_protocol

    def is_closing(self) -> bool:
        """True once closing started or the connection failed or ended."""
        protocol = self._protocol
        return (
            protocol._closing
            or protocol._error is not None
            or protocol._app_lost
            or protocol._detached
        )

    # -- reading -----------------------------------------------------------

    def is_reading(self) -> bool:
        """True unless the application paused reading."""
        return self._protocol._app_reading and not self.is_closing()

    def pause_reading(self) -> None:
        """Stop calling the protocol's ``data_received`` until resumed."""
        self._protocol._app_reading = False
        self._protocol._refresh()
        self._protocol._control_raw_reading()

    def resume_reading(self) -> None:
        """Deliver again, starting with what arrived meanwhile."""
        protocol = self._protocol
        if not protocol._app_reading:
            protocol._app_reading = True
            protocol._refresh()
            protocol._loop.call_soon(protocol._pump)

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks for decrypted bytes the application has not taken."""
        protocol = self._protocol
        protocol._read_high, protocol._read_low = _limits(high, low, READ_HIGH_WATER)
        protocol._control_raw_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        """(low, high) for reading."""
        return self._protocol._read_low, self._protocol._read_high

    def get_read_buffer_size(self) -> int:
        """Decrypted bytes waiting for the application."""
        return self._protocol._cleartext.pending

    # -- writing -----------------------------------------------------------

    def write(self, data: Buffer) -> None:
        """Encrypt and send ``data``.  Before the handshake completes it is
        kept and sent right after."""
        protocol = self._protocol
        if protocol._fast_out and type(data) is bytes and len(data) <= WRITE_CHUNK:
            # The short path: encrypt now, hand the records to the transport.
            try:
                taken = protocol._ct_write(data)
            except SecurePairError as exc:
                protocol._fatal(exc)
                return
            protocol._transport.write(protocol._enc_read())  # type: ignore[union-attr]
            if taken == len(data):
                return
            data = memoryview(data)[taken:]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if not data:
            return
        if protocol._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if (
            protocol._closing
            or protocol._error is not None
            or protocol._transport is None
            or protocol._detached
        ):
            protocol._conn_lost_writes += 1
            if protocol._conn_lost_writes == _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("write() on a closed TLS transport; data dropped")
            return
        if not protocol._handshake_done:
            chunk = bytes(data)
            protocol._out_backlog.append(chunk)
            protocol._out_backlog_size += len(chunk)
            protocol._control_app_writing()
            return
        protocol._write(data)

    def writelines(self, list_of_data: Iterable[Buffer]) -> None:
        """Write every buffer in turn."""
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Send close_notify after the pending data; reading goes on (TLS
        1.3 half-close; a TLS 1.2 peer may answer with its own close)."""
        protocol = self._protocol
        if protocol._eof_written or protocol._closing or protocol._error is not None:
            return
        protocol._eof_written = True
        protocol._refresh()
        if protocol._handshake_done and self.pair.state in _CAN_CLOSE:
            protocol._close_notify()

    def can_write_eof(self) -> bool:
        """True: close_notify ends our direction only."""
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks for bytes written but not yet sent."""
        protocol = self._protocol
        protocol._write_high, protocol._write_low = _limits(high, low, WRITE_HIGH_WATER)
        if protocol._transport is not None:
            with contextlib.suppress(NotImplementedError):
                protocol._transport.set_write_buffer_limits(
                    protocol._write_high, protocol._write_low
                )
        protocol._control_app_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) for writing."""
        return self._protocol._write_low, self._protocol._write_high

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet sent: held before the handshake, plus
        the plain transport's buffer."""
        return self._protocol._get_write_buffer_size()

    # -- ending ------------------------------------------------------------

    def close(self) -> None:
        """Send close_notify after the pending data, wait (at most
        ``ssl_shutdown_timeout``) for the peer's, then close.  No more data
        is delivered to the protocol."""
        self._protocol._start_shutdown()

    def abort(self) -> None:
        """Close at once, without close_notify; pending data is lost."""
        protocol = self._protocol
        protocol._closing = True
        protocol._refresh()
        protocol._cancel_timer()
        if protocol._transport is not None:
            protocol._transport.abort()

    async def unwrap(self) -> tuple[asyncio.Transport, bytes]:
        """End TLS and return ``(plain transport, trailing bytes)``.

        Sends close_notify and waits for the peer's (at most
        ``ssl_shutdown_timeout`` seconds, then ``TimeoutError``).  The
        trailing bytes are what followed the peer's close_notify.  The plain
        transport comes back with reading paused and this protocol still set:
        call its ``set_protocol()`` and then ``resume_reading()``.  The
        application protocol gets ``connection_lost(None)``.
        """
        protocol = self._protocol
        pair = self.pair
        if protocol._error is not None:
            raise protocol._error
        if protocol._closing or protocol._transport is None:
            raise RuntimeError("cannot unwrap a closing TLS transport")
        if not protocol._handshake_done:
            raise LocalProtocolError("cannot unwrap before the TLS handshake completes")
        if not _is_unwrapped(pair):
            if protocol._unwrap_waiter is not None:
                raise RuntimeError("unwrap() is already running")
            try:
                pair.unwrap()
            except SecurePairError as exc:
                protocol._fatal(exc)
                raise protocol._error from None  # type: ignore[misc]
            transport = protocol._transport
            if protocol._encrypted.pending:
                transport.write(protocol._encrypted.read())
            if not _is_unwrapped(pair):
                waiter: asyncio.Future[None] = protocol._loop.create_future()
                protocol._unwrap_waiter = waiter
                protocol._refresh()
                protocol._eof_delivered = False
                if protocol._raw_paused and not protocol._raw_stopped:
                    protocol._raw_paused = False
                    transport.resume_reading()
                elif protocol._raw_stopped:
                    protocol._raw_stopped = protocol._raw_paused = False
                    transport.resume_reading()
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), protocol._shutdown_timeout)
                finally:
                    protocol._unwrap_waiter = None
                    protocol._refresh()
        transport = protocol._transport
        if transport is None:
            raise ConnectionResetError("the connection was closed during unwrap()")
        protocol._stop_raw_reading()
        protocol._detached = True
        protocol._refresh()
        trailing = pair.trailing_data + protocol._in_backlog
        protocol._in_backlog = b""
        if protocol._app_connected and not protocol._app_lost:
            protocol._app_lost = True
            protocol._app_protocol.connection_lost(None)
        return transport, trailing

    def __repr__(self) -> str:
        return f"<securepair.asyncio.TLSTransport {self.pair.state.value}>"


# ----------------------------------------------------------------------
# Streams


class _StreamProtocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol, kept open after the peer's close_notify
    so that the writer can still answer (TLS 1.3 half-close).  asyncio's own
    keeps a TLS transport open only without ``sslcontext``."""

    def eof_received(self) -> bool:
        super().eof_received()
        return True


def _resolve_config(config: Config | None, ssl_arg: Any) -> Config:
    if config is not None:
        if ssl_arg not in (None, False, True) and ssl_arg is not config:
            raise ValueError("pass the TLS configuration as config= or ssl=, not both")
        return config
    if isinstance(ssl_arg, ssl.SSLContext):
        return ssl_arg
    if ssl_arg is True:
        return TLSConfig()
    raise ValueError("config= is required (a TLSConfig, ssl.SSLContext or OpenSSL.SSL.Context)")


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    config: Config | None = None,
    limit: int = 2**16,
    ssl: Any = None,
    server_hostname: str | None = None,
    session: Any = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over TLS: connect, handshake, and return
    ``(reader, writer)``.

    Takes asyncio's arguments (``sock=``, ``local_addr=``, ``family=``,
    ``happy_eyeballs_delay=``...) plus ``config=``; an ``ssl.SSLContext``
    passed as ``ssl=`` is used as the config.  ``server_hostname`` defaults
    to the config's ``servername``, else ``host``.
    """
    loop = asyncio.get_running_loop()
    tls_config = _resolve_config(config, ssl)
    if server_hostname is None and not (
        isinstance(tls_config, TLSConfig) and tls_config.servername
    ):
        server_hostname = host
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    app = _StreamProtocol(reader, loop=loop)
    waiter: asyncio.Future[None] = loop.create_future()

    def factory() -> TLSProtocol:
        return TLSProtocol(
            app,
            tls_config,
            server_side=False,
            server_hostname=server_hostname,
            session=session,
            waiter=waiter,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    transport, protocol = await loop.create_connection(
        factory,
        host,  # type: ignore[arg-type]
        port,  # type: ignore[arg-type]
        **kwds,
    )
    await _await_handshake(waiter, transport, protocol)
    writer = asyncio.StreamWriter(protocol.app_transport, app, reader, loop)
    return reader, writer


async def start_server(
    client_connected_cb: Callable[
        [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
    ],
    host: str | list[str] | None = None,
    port: int | str | None = None,
    *,
    config: Config | None = None,
    limit: int = 2**16,
    ssl: Any = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> asyncio.Server:
    """``asyncio.start_server`` over TLS: ``client_connected_cb(reader,
    writer)`` runs for each client once its handshake is complete.

    Takes asyncio's arguments (``sock=``, ``backlog=``, ``reuse_port=``,
    ``start_serving=``...) plus ``config=``.  A client whose handshake fails
    never reaches the callback; the failure is logged at debug level on the
    ``securepair.asyncio`` logger.
    """
    loop = asyncio.get_running_loop()
    tls_config = _resolve_config(config, ssl)

    def factory() -> TLSProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        app = _StreamProtocol(reader, client_connected_cb, loop=loop)
        return TLSProtocol(
            app,
            tls_config,
            server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    return await loop.create_server(factory, host, port, **kwds)  # type: ignore[arg-type]


async def start_tls(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    config: Config,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    session: Any = None,
    initial_data: Buffer = b"",
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> TLSTransport:
    """Upgrade an open transport to TLS, like ``loop.start_tls``.

    ``initial_data`` holds the bytes ``protocol`` already received that
    belong to TLS (a ClientHello that came with the STARTTLS command).  The
    transport gets the TLS protocol before this function first awaits, so
    every later byte is TLS input too.  Returns the new transport, which
    ``protocol`` must use from now on (its ``connection_made`` is not
    called).
    """
    transport = cast("asyncio.Transport", transport)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    tls = TLSProtocol(
        protocol,
        config,
        server_side=server_side,
        server_hostname=server_hostname,
        session=session,
        initial_data=initial_data,
        waiter=waiter,
        call_connection_made=False,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    _switch(transport, tls)
    try:
        await _await_handshake(waiter, transport, tls)
    except BaseException:
        # The traceback keeps this frame: without these locals it holds no
        # connection (and the failed future no cycle through it).
        del waiter, tls, transport, protocol
        raise
    return tls.app_transport


async def _await_handshake(
    waiter: asyncio.Future[None], transport: asyncio.Transport, tls: TLSProtocol
) -> None:
    try:
        await waiter
    except BaseException:
        # A TLS failure is already being handled (alert out, write side shut,
        # input drained, then closed): aborting now would turn that into a
        # reset.  Anything else (the caller was cancelled) aborts.
        if tls._error is None:
            transport.abort()
        del waiter, transport, tls  # see start_tls
        raise


def _switch(transport: asyncio.Transport, tls: TLSProtocol) -> None:
    """Put ``tls`` on ``transport`` now, with no await in between."""
    transport.set_protocol(tls)
    tls.connection_made(transport)
    if not transport.is_reading() and not tls._raw_paused and tls._error is None:
        transport.resume_reading()


async def upgrade_streams(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    config: Config,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    session: Any = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Upgrade a stream pair to TLS in place, like ``StreamWriter.start_tls``;
    returns the same ``(reader, writer)``, now over TLS.

    The bytes still in ``reader``'s buffer go to TLS as its first input:
    on a server, the ClientHello that arrived with the STARTTLS command or
    the PROXY header; on a client, anything after the server's go-ahead is
    TLS too (plaintext there would be an injection, and fails the
    handshake).  asyncio's own ``start_tls`` leaves them in the reader, where
    the handshake never finds them (cpython gh-142352).
    """
    loop = asyncio.get_running_loop()
    await writer.drain()
    transport = cast("asyncio.Transport", writer.transport)
    # asyncio has no public way to take a StreamReader's buffered bytes or
    # to move a stream pair to a new transport; StreamWriter.start_tls uses
    # the same private attributes.  The buffered bytes are TLS input.
    buffered = reader._buffer  # type: ignore[attr-defined]
    initial = bytes(buffered)
    buffered.clear()
    at_eof = bool(reader._eof)  # type: ignore[attr-defined]
    reader._eof = False  # type: ignore[attr-defined]  # TLS reports its own end
    reader._transport = None  # type: ignore[attr-defined]
    reader._paused = False  # type: ignore[attr-defined]
    app = _StreamProtocol(reader, loop=loop)
    waiter: asyncio.Future[None] = loop.create_future()
    tls = TLSProtocol(
        app,
        config,
        server_side=server_side,
        server_hostname=server_hostname,
        session=session,
        initial_data=initial,
        waiter=waiter,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    tls._initial_eof = at_eof
    # From here on the writer is the TLS transport's: the old protocol is
    # gone, and the writer must not close the plain transport behind TLS's
    # back when it is collected.
    writer._transport = tls.app_transport  # type: ignore[attr-defined]
    writer._protocol = app  # type: ignore[attr-defined]
    _switch(transport, tls)
    await _await_handshake(waiter, transport, tls)
    return reader, writer


async def unwrap_streams(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """End TLS on a stream pair made here; returns a plain ``(reader,
    writer)`` whose reader starts with the bytes that followed the peer's
    close_notify.  Unread cleartext stays readable from the old reader."""
    loop = asyncio.get_running_loop()
    tls_transport = writer.transport
    if not isinstance(tls_transport, TLSTransport):
        raise TypeError("the writer is not over a securepair TLSTransport")
    await writer.drain()
    raw, trailing = await tls_transport.unwrap()
    new_reader = asyncio.StreamReader(limit=reader._limit, loop=loop)  # type: ignore[attr-defined]
    protocol = asyncio.StreamReaderProtocol(new_reader, loop=loop)
    raw.set_protocol(protocol)
    protocol.connection_made(raw)
    if trailing:
        new_reader.feed_data(trailing)
    raw.resume_reading()
    return new_reader, asyncio.StreamWriter(raw, protocol, new_reader, loop)
