"""TLS over any ``anyio`` byte stream, on trio and on asyncio: :class:`TLSStream`.

Theory of operation
===================

:meth:`TLSStream.wrap` puts a :class:`~securepair.SecurePair` on top of a
connected ``anyio.abc.ByteStream`` (a TCP connection from
``anyio.connect_tcp``, a Unix socket, a memory stream, another TLS stream)
and runs the handshake.  The result is itself an ``anyio.abc.ByteStream``,
so it runs wherever anyio runs: trio, asyncio, uvloop.

Receiving asks the transport for up to
:data:`~securepair._adapters.RECV_SIZE` bytes at a time and feeds them to
the pair, which decrypts every complete record at once; ``receive()`` then
returns from the pair's buffer without touching the transport until it is
empty.  Sending encrypts into the pair and sends what comes out.

One task may receive while another sends (anyio's rule for streams: two
concurrent receives, or two concurrent sends, raise ``BusyResourceError``).
Receiving can make output too (the end of a handshake, a key update); the
receiving task sends it itself unless a send is in progress, in which case
the sending task, which sends until the pair has nothing left, takes it
along.  A lock with a fast uncontended path orders the two.

Cancellation
------------
A cancelled ``receive()`` loses nothing: the transport's receive is atomic
with respect to cancellation and the pair keeps whatever it decrypted.  A
``send()`` cancelled while it waits for its turn has done nothing.  A
``send()`` cancelled while the transport is sending cannot tell how much of
the ciphertext went out, so the stream is then broken, cleanly: every later
call raises ``anyio.BrokenResourceError`` and ``aclose()`` sends no
close_notify, so the peer sees an error and never a short stream that looks
complete (trio's ``SSLStream`` makes the same choice).

Ends
----
``send_eof()`` sends close_notify and keeps receiving (TLS 1.3 half-close;
a TLS 1.2 peer may answer with its own close).  The peer's close_notify is
``EndOfStream``; a transport EOF without it is
:class:`~securepair.errors.RaggedEOFError` unless the config allows ragged
EOFs.  ``aclose()`` sends close_notify and waits (at most
``shutdown_timeout`` seconds) for the peer's, then closes the transport.
:meth:`TLSStream.unwrap` returns the transport and the bytes that followed
the peer's close_notify.  When TLS fails, the alert is sent, the
transport's write side shut down and its input drained for a moment before
it is closed and the error raised.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, TaskGroup
from anyio.streams.tls import TLSAttribute

from ._adapters import (
    ALERT_DRAIN_LIMIT,
    ALERT_DRAIN_TIMEOUT,
    ALERT_FLUSH_TIMEOUT,
    RECV_SIZE,
    Buffer,
    TLSDetails,
    ssl_compatible,
)
from .config import TLSConfig
from .errors import LocalProtocolError, RaggedEOFError, SecurePairError
from .pair import PairState, SecurePair

__all__ = ["TLSStream", "TLSListener"]

logger = logging.getLogger("securepair.anyio")

_DONE_READING = frozenset({PairState.PEER_CLOSED, PairState.CLOSED, PairState.UNWRAPPED})
_OPEN = PairState.OPEN
_CLOSING = PairState.CLOSING
_CAN_CLOSE = frozenset({PairState.OPEN, PairState.PEER_CLOSED})

#: Largest piece of a send encrypted at once (16 full records): each piece's
#: ciphertext is sent before the next is made, so the ``bytes`` handed to
#: the transport stay small enough for the allocator to recycle, and a
#: send of any size needs no more buffer than this.
SEND_CHUNK = 256 * 1024

#: Default seconds ``aclose()`` waits for the peer's close_notify (asyncio's
#: default for the same wait).
SHUTDOWN_TIMEOUT = 30.0


class _SendTurn:
    """Whose turn it is to send on the transport: one task at a time, the
    others wait.  Costs two attribute writes when uncontended (a stream that
    one task writes), where ``anyio.Lock`` costs two coroutine calls."""

    __slots__ = ("_idle", "busy")

    def __init__(self) -> None:
        self.busy = False
        self._idle: anyio.Event | None = None

    async def wait(self) -> None:
        """Wait until nobody is sending (cancellable: nothing is held)."""
        while self.busy:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def release(self) -> None:
        self.busy = False
        idle = self._idle
        if idle is not None:
            self._idle = None
            idle.set()


class TLSStream(TLSDetails, ByteStream):
    """A TLS connection over an ``anyio.abc.ByteStream``; make it with
    :meth:`wrap`.

    Has the pair's details (``version()``, ``cipher()``, ``getpeercert()``,
    ``authorized``, ``peer_certificate()``, the events...) and anyio's
    ``TLSAttribute`` extra attributes.  TLS failures raise the engine's
    errors, as instances that are also ``ssl.SSLError`` (anyio's own
    ``TLSStream`` raises ``ssl.SSLError``); after one, every call raises
    ``anyio.BrokenResourceError``.
    """

    def __init__(
        self,
        transport_stream: ByteStream,
        pair: SecurePair,
        *,
        shutdown_timeout: float | None = SHUTDOWN_TIMEOUT,
    ) -> None:
        #: The stream underneath.
        self.transport_stream = transport_stream
        self.pair = pair
        self._cleartext = pair.cleartext
        self._encrypted = pair.encrypted
        # The hot calls, bound once.
        self._ct_read = pair.cleartext.read
        self._ct_write = pair.cleartext.write
        self._enc_write = pair.encrypted.write
        self._enc_read = pair.encrypted.read
        self._shutdown_timeout = shutdown_timeout
        #: False if a transport EOF without close_notify counts as a clean
        #: end (``TLSConfig(allow_ragged_eof=True)``), as anyio names it.
        self.standard_compatible = True
        self._turn = _SendTurn()
        self._receive_guard = anyio.ResourceGuard("reading from")
        self._send_guard = anyio.ResourceGuard("writing to")
        self._backlog = b""
        self._eof = False
        self._receiving = False
        self._error: BaseException | None = None
        self._send_broken = False
        self._eof_sent = False
        self._closed = False
        self._unwrapped = False
        #: True while nothing failed, broke, closed or unwrapped: receive()
        #: and send() can skip their checks.
        self._healthy = True

    @classmethod
    async def wrap(
        cls,
        transport_stream: ByteStream,
        config: TLSConfig | ssl.SSLContext | Any,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: Any = None,
        initial_data: Buffer = b"",
        handshake_timeout: float | None = None,
        shutdown_timeout: float | None = SHUTDOWN_TIMEOUT,
    ) -> TLSStream:
        """Start TLS on ``transport_stream`` and complete the handshake.

        ``initial_data`` holds bytes already received from the transport
        that belong to TLS (a ClientHello that arrived with a STARTTLS
        command).  If the handshake fails, times out (``TimeoutError``) or
        is cancelled, the transport is closed.
        """
        pair = SecurePair(
            config, server_side=server_side, server_hostname=server_hostname, session=session
        )
        self = cls(transport_stream, pair, shutdown_timeout=shutdown_timeout)
        self.standard_compatible = not (isinstance(config, TLSConfig) and config.allow_ragged_eof)
        try:
            with anyio.fail_after(handshake_timeout):
                if initial_data:
                    await self._feed(bytes(initial_data))
                await self._do_handshake()
        except BaseException:
            if self._error is None:
                self._closed = True
                await anyio.aclose_forcefully(transport_stream)
            raise
        return self

    # ------------------------------------------------------------------
    # Plumbing

    async def _feed(self, data: bytes) -> None:
        try:
            taken = self._encrypted.write(data)
        except SecurePairError as exc:
            raise await self._fail(exc) from None
        if taken < len(data):
            self._backlog = data[taken:]

    async def _fill(self) -> bool:
        """Feed the pair once, from the backlog or the transport, and send
        what it answers; False at the transport's EOF."""
        backlog = self._backlog
        if backlog:
            self._backlog = b""
            await self._feed(backlog)
        elif self._eof:
            return False
        else:
            try:
                data = await self.transport_stream.receive(RECV_SIZE)
            except anyio.EndOfStream:
                self._eof = True
                try:
                    self._encrypted.write_eof()
                except SecurePairError as exc:
                    raise await self._fail(exc) from None
                return False
            try:
                taken = self._enc_write(data)
            except SecurePairError as exc:
                raise await self._fail(exc) from None
            if taken < len(data):
                self._backlog = data[taken:]
        if self._encrypted.pending:
            await self._flush_if_idle()
        return True

    async def _flush_if_idle(self) -> None:
        """Send what reading produced, unless a send is in progress: the
        sending task sends until the pair has nothing left, this included."""
        turn = self._turn
        if not turn.busy:
            turn.busy = True
            try:
                await self._flush()
            finally:
                turn.release()

    async def _flush(self) -> None:
        """Send what the pair has to send; the caller has the send turn."""
        read = self._enc_read
        send = self.transport_stream.send
        try:
            data = read()
            while data:
                await send(data)
                data = read()
        except BaseException:
            # How much went out is unknown: the TLS stream is broken.
            self._send_broken = True
            self._healthy = False
            raise

    async def _fail(self, exc: SecurePairError) -> BaseException:
        """TLS failed: send the alert, shut down the transport's write side,
        drain its input briefly, close it.  Returns the error to raise."""
        if isinstance(exc, LocalProtocolError):
            return exc
        error = ssl_compatible(exc)
        self._error = error
        self._healthy = False
        transport = self.transport_stream
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(ALERT_FLUSH_TIMEOUT):
                try:
                    alert = self._encrypted.read()
                    if not self._send_broken:
                        await self._turn.wait()
                        self._turn.busy = True
                        try:
                            if alert:
                                await transport.send(alert)
                            await transport.send_eof()
                        finally:
                            self._turn.release()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
            if not self._eof and not isinstance(exc, RaggedEOFError):
                with anyio.move_on_after(ALERT_DRAIN_TIMEOUT):
                    drained = 0
                    try:
                        while drained < ALERT_DRAIN_LIMIT:
                            drained += len(await transport.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass
                    except anyio.BusyResourceError:
                        pass  # another task is receiving: it will see the end
            self._closed = True
            await anyio.aclose_forcefully(transport)
        return error

    def _check(self) -> None:
        if self._closed and self._error is None:
            raise anyio.ClosedResourceError
        if self._error is not None:
            raise anyio.BrokenResourceError(
                f"the TLS connection failed: {self._error}"
            ) from self._error
        if self._send_broken:
            raise anyio.BrokenResourceError(
                "an earlier send was cancelled or failed halfway: the TLS stream is broken"
            )

    async def _locked_flush(self) -> None:
        turn = self._turn
        await turn.wait()
        turn.busy = True
        try:
            await self._flush()
        finally:
            turn.release()

    async def _do_handshake(self) -> None:
        pair = self.pair
        while not pair.handshake_complete:
            if self._encrypted.pending:
                await self._locked_flush()
            if not await self._fill():  # pragma: no cover - the pair raises first
                raise anyio.BrokenResourceError("the connection ended during the TLS handshake")
        if self._encrypted.pending:
            await self._locked_flush()

    # ------------------------------------------------------------------
    # ByteStream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` decrypted bytes; ``EndOfStream`` after the
        peer's close_notify."""
        with self._receive_guard:
            if self._healthy:
                data = self._ct_read(max_bytes)
                if data:
                    return data
                if max_bytes > 0:
                    # The short path: read the transport until cleartext comes.
                    pair = self.pair
                    self._receiving = True
                    try:
                        while True:
                            state = pair.state
                            if state is not _OPEN and state is not _CLOSING:
                                raise anyio.EndOfStream
                            if not await self._fill() and not self._backlog:
                                data = self._ct_read(max_bytes)
                                if data:
                                    return data
                                raise anyio.EndOfStream
                            data = self._ct_read(max_bytes)
                            if data:
                                return data
                    finally:
                        self._receiving = False
            cleartext = self._cleartext
            if cleartext.pending and not self._closed:
                return cleartext.read(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be a positive integer")
            self._check()
            pair = self.pair
            self._receiving = True
            try:
                while not cleartext.pending:
                    if self._unwrapped or pair.state in _DONE_READING:
                        raise anyio.EndOfStream
                    if not await self._fill() and not cleartext.pending and not self._backlog:
                        raise anyio.EndOfStream
            finally:
                self._receiving = False
            return cleartext.read(max_bytes)

    async def send(self, item: Buffer) -> None:
        """Encrypt and send all of ``item``."""
        with self._send_guard:
            if not self._healthy or self._eof_sent:
                self._check()
                raise anyio.ClosedResourceError
            turn = self._turn
            if turn.busy:
                await turn.wait()  # the receiving task is sending: wait
            turn.busy = True
            try:
                write = self._ct_write
                try:
                    size = len(item) if type(item) is bytes else memoryview(item).nbytes
                    if size <= SEND_CHUNK:
                        write(item)  # all of it: the pair's output is empty here
                    else:
                        view = memoryview(item).cast("B")
                        taken = write(view[:SEND_CHUNK])
                        while taken < size:
                            await self._flush()
                            taken += write(view[taken : taken + SEND_CHUNK])
                except SecurePairError as exc:
                    raise await self._fail(exc) from None
                await self._flush()
            finally:
                turn.release()

    async def send_eof(self) -> None:
        """Send close_notify; receiving goes on until the peer's (TLS 1.3
        half-close).  Idempotent."""
        with self._send_guard:
            self._check()
            if self._eof_sent:
                return
            self._eof_sent = True
            await self._turn.wait()
            self._turn.busy = True
            try:
                if self.pair.state in _CAN_CLOSE:
                    self.pair.close()
                await self._flush()
            finally:
                self._turn.release()

    async def aclose(self) -> None:
        """Send close_notify, wait (at most ``shutdown_timeout`` seconds) for
        the peer's unless another task is receiving, and close the
        transport.  A broken stream is closed without close_notify."""
        if self._closed:
            return
        self._closed = True
        self._healthy = False
        if self._unwrapped:
            return
        pair = self.pair
        transport = self.transport_stream
        try:
            healthy = self._error is None and not self._send_broken
            if not healthy and not self._eof and self._error is None:
                # Broken by a cancelled send: no close_notify (the peer must
                # see an error), but still a FIN and a drain, not a reset.
                with anyio.CancelScope(shield=True), anyio.move_on_after(ALERT_DRAIN_TIMEOUT):
                    await transport.send_eof()
                    drained = 0
                    while drained < ALERT_DRAIN_LIMIT:
                        drained += len(await transport.receive())
            elif healthy and pair.handshake_complete:
                with anyio.move_on_after(self._shutdown_timeout):
                    await self._turn.wait()
                    self._turn.busy = True
                    try:
                        if pair.state in _CAN_CLOSE:
                            pair.close()
                        await self._flush()
                    finally:
                        self._turn.release()
                    if not self._receiving:
                        while pair.state not in _DONE_READING and await self._fill():
                            self._cleartext.read()
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.BusyResourceError,
            SecurePairError,
            OSError,
        ):
            pass
        except BaseException:
            await anyio.aclose_forcefully(transport)
            raise
        await transport.aclose()

    async def unwrap(self) -> tuple[ByteStream, bytes]:
        """End TLS and return ``(transport stream, trailing bytes)``.

        Sends close_notify and waits for the peer's; the trailing bytes
        followed it (plaintext of the next phase).  Cleartext that arrived
        before the peer's close_notify and was not received yet can still be
        received from this stream.
        """
        with self._receive_guard, self._send_guard:
            self._check()
            pair = self.pair
            self._healthy = False
            await self._turn.wait()
            self._turn.busy = True
            try:
                if pair.state is not PairState.UNWRAPPED:
                    pair.unwrap()
                await self._flush()
            finally:
                self._turn.release()
            while pair.state is not PairState.UNWRAPPED:
                if not await self._fill():
                    raise ssl_compatible(
                        RaggedEOFError(
                            "peer closed the connection without close_notify: nothing to unwrap to"
                        )
                    )
            trailing = pair.trailing_data + self._backlog
            self._backlog = b""
            self._unwrapped = True
            return self.transport_stream, trailing

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The transport's attributes plus anyio's ``TLSAttribute`` ones."""
        return {
            **self.transport_stream.extra_attributes,
            TLSAttribute.alpn_protocol: self.selected_alpn_protocol,
            TLSAttribute.cipher: self.cipher,
            TLSAttribute.peer_certificate: lambda: self.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: self.getpeercert(True),
            TLSAttribute.server_side: lambda: self.pair.server_side,
            TLSAttribute.shared_ciphers: lambda: None,
            TLSAttribute.ssl_object: lambda: self,
            TLSAttribute.standard_compatible: lambda: self.standard_compatible,
            TLSAttribute.tls_version: self.version,
        }

    def __repr__(self) -> str:
        role = "server" if self.pair.server_side else "client"
        return f"<securepair.anyio.TLSStream {role} {self.pair.state.value}>"


class TLSListener(Listener[TLSStream]):
    """Wraps a listener: every accepted connection is handshaken and handed
    to the handler as a :class:`TLSStream`.  A client whose handshake fails
    or times out is closed and logged at debug level
    (``securepair.anyio`` logger); the handler never sees it."""

    def __init__(
        self,
        listener: Listener[Any],
        config: TLSConfig | ssl.SSLContext | Any,
        *,
        handshake_timeout: float | None = 30.0,
        shutdown_timeout: float | None = SHUTDOWN_TIMEOUT,
    ) -> None:
        self.listener = listener
        self.config = config
        self.handshake_timeout = handshake_timeout
        self.shutdown_timeout = shutdown_timeout

    async def serve(
        self, handler: Callable[[TLSStream], Any], task_group: TaskGroup | None = None
    ) -> None:
        """Serve until cancelled, calling ``handler(tls_stream)`` per client."""

        async def wrapped(stream: ByteStream) -> None:
            try:
                tls = await TLSStream.wrap(
                    stream,
                    self.config,
                    server_side=True,
                    handshake_timeout=self.handshake_timeout,
                    shutdown_timeout=self.shutdown_timeout,
                )
            except Exception as exc:
                logger.debug("TLS handshake failed: %s", exc)
                return
            await handler(tls)

        await self.listener.serve(wrapped, task_group)

    async def aclose(self) -> None:
        """Close the wrapped listener."""
        await self.listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The wrapped listener's attributes."""
        return self.listener.extra_attributes
