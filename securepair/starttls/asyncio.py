"""STARTTLS in one call over asyncio: streams and protocols, client and
server.

Client, streams::

    from securepair.starttls.asyncio import open_starttls_connection

    reader, writer = await open_starttls_connection(
        "mx.example.com", 25, protocol="smtp", config=TLSConfig(ca="ca.pem"))
    print(writer.capabilities)           # EHLO keywords, asked inside TLS

Server, streams (from an ``asyncio.start_server`` callback)::

    async def client_connected(reader, writer):
        result = await accept_starttls(reader, writer, "imap", server_config,
                                       handler=handler)
        # reader and writer are TLS now; result.negotiator.answer_in_tls()

Protocols: :func:`create_starttls_connection` (client, like
``loop.create_connection``) and :func:`starttls_server_protocol` (a factory
for ``loop.create_server`` whose application protocol starts inside TLS).

How it works (see :mod:`securepair.starttls._connect`): during the
plaintext phase the transport's protocol feeds every byte straight into the
negotiator, so no byte can be buffered anywhere else; at the switch point
the negotiator's pair is adopted by a
:class:`~securepair.asyncio.TLSProtocol` put on the transport in the same
callback step (no byte can arrive in between); the capability follow-up
runs inside TLS in a protocol of its own, which hands the transport, and
whatever came after the follow-up's reply, to the application's protocol
in one step.

Every helper takes ``timeout=`` (seconds for the whole dance, ``None``
for none) and asyncio's ``ssl_handshake_timeout`` and
``ssl_shutdown_timeout``.  On every error and on cancellation the
connection is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from .._adapters import ssl_compatible
from ..asyncio import TLSProtocol, TLSTransport, _await_handshake, _StreamProtocol, _switch
from ..config import TLSConfig
from ..errors import SecurePairError
from ._base import ClientNegotiator, Followup, ServerNegotiator, Side, State
from ._connect import (
    CommandHandler,
    EventPump,
    StartTLSResult,
    check_switch,
    client_negotiator,
    finish_command,
    server_negotiator,
)
from .errors import PeerClosedError, StartTLSError

__all__ = [
    "StartTLSStreamWriter",
    "StartTLSResult",
    "CommandHandler",
    "open_starttls_connection",
    "accept_starttls",
    "create_starttls_connection",
    "starttls_server_protocol",
]

logger = logging.getLogger("securepair.starttls")

Config = TLSConfig | ssl.SSLContext | Any
P = TypeVar("P", bound=asyncio.BaseProtocol)
#: Makes the application's protocol once TLS is up (server side).
AppFactory = Callable[[StartTLSResult], asyncio.BaseProtocol]


class StartTLSStreamWriter(asyncio.StreamWriter):
    """The writer :func:`open_starttls_connection` returns: a
    ``StreamWriter`` over the TLS transport, with what the negotiation
    learned."""

    #: What the negotiation learned.
    starttls: StartTLSResult

    @property
    def capabilities(self) -> tuple[str, ...] | None:
        """The capabilities exchanged inside TLS (see
        :attr:`StartTLSResult.capabilities`)."""
        return self.starttls.capabilities


# ----------------------------------------------------------------------
# The plaintext phase


class _Plaintext(asyncio.Protocol):
    """The transport's protocol until the switch: every byte goes into the
    negotiator at once, its output goes out at once."""

    def __init__(self, negotiator: ClientNegotiator | ServerNegotiator) -> None:
        self.negotiator = negotiator
        self.pump = EventPump(negotiator)
        self.transport: asyncio.Transport | None = None
        #: The first error: the negotiator's, or the connection's loss.
        self.error: BaseException | None = None
        self._wakeup = asyncio.Event()
        self._paused = False

    # -- callbacks from the transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flush()

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._feed(b"")
        return True  # keep the write side: a server may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = exc or PeerClosedError(
                "the connection closed before TLS started", protocol=self.negotiator.protocol
            )
        self._wakeup.set()

    # -- for the negotiation task

    def _feed(self, data: bytes) -> None:
        if self.error is None:
            try:
                self.negotiator.receive_data(data)
            except StartTLSError as exc:
                self.error = exc
            self.flush()
            if self.negotiator.state is State.NEGOTIATING and self._waiting():
                self._pause()
        self._wakeup.set()

    def _waiting(self) -> bool:
        negotiator = self.negotiator
        return isinstance(negotiator, ServerNegotiator) and negotiator.waiting is not None

    def _pause(self) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def flush(self) -> None:
        """Send what the negotiator has to send, now.  After an error only
        a server's error reply goes out; a client says nothing more."""
        if self.error is not None and self.negotiator.side is Side.CLIENT:
            return
        out = self.negotiator.data_to_send()
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)

    async def run(self, handler: CommandHandler | None) -> None:
        """Negotiate up to the switch point (raise for every other end)."""
        negotiator = self.negotiator
        while True:
            if self.error is not None:
                raise self.error
            for command in self.pump.commands():
                if handler is not None:
                    answer = handler(negotiator, command)  # type: ignore[arg-type]
                    if inspect.isawaitable(answer):
                        await answer
                if self.error is not None:
                    raise self.error
                finish_command(negotiator, command)
                self.flush()
            self.flush()
            if negotiator.state is not State.NEGOTIATING:
                check_switch(negotiator)
                return
            if self._paused and not self._waiting():
                self._paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self._wakeup.clear()
            await self._wakeup.wait()


# ----------------------------------------------------------------------
# Inside TLS: the follow-up, then the application


class _Handover(asyncio.Protocol):
    """The TLS transport's first protocol: runs the capability follow-up
    (if any), then gives the transport to the application's protocol and,
    in the same step, the cleartext that came after the follow-up."""

    def __init__(
        self,
        followup: Followup | None,
        make_app: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._followup = followup
        self._make_app = make_app
        self._transport: TLSTransport | None = None
        self.app: asyncio.BaseProtocol | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody awaits this future after a failed handshake: mark its
        # exception as seen so that asyncio does not log it.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._step(None)

    def data_received(self, data: bytes) -> None:
        if self.app is not None:
            # A delivery loop that read its protocol once, before the switch.
            self.app.data_received(data)  # type: ignore[attr-defined]
            return
        self._step(data)

    def eof_received(self) -> bool:
        if self.app is None:
            self._step(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.app is not None:  # pragma: no cover - the app gets it after the switch
            self.app.connection_lost(exc)
            return
        self._fail(exc or PeerClosedError("the connection closed inside TLS", protocol=""))

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def _step(self, data: bytes | None) -> None:
        if self.done.done():
            return
        transport = self._transport
        assert transport is not None
        followup = self._followup
        trailing = b""
        if followup is not None:
            try:
                if data is not None:
                    followup.receive_data(data)
                out = followup.data_to_send()
            except StartTLSError as exc:
                self._fail(exc)
                return
            if out:
                transport.write(out)
            if not followup.done:
                return
            trailing = followup.trailing_data
        try:
            app = self._make_app()
            transport.set_protocol(app)
            self.app = app
            app.connection_made(transport)
            if trailing:
                app.data_received(trailing)  # type: ignore[attr-defined]
        except Exception as exc:  # the application's bug: the helper raises it
            self._fail(exc)
            return
        self.done.set_result(None)


async def _upgrade(
    transport: asyncio.Transport,
    plain: _Plaintext,
    config: Config,
    make_app: Callable[[StartTLSResult], asyncio.BaseProtocol],
    *,
    handler: CommandHandler | None = None,
    server_hostname: str | None = None,
    session: Any = None,
    followup: bool = True,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[TLSTransport, asyncio.BaseProtocol, StartTLSResult]:
    """Negotiate, switch, follow up; returns the TLS transport, the
    application's protocol and the result.  Closes the connection on every
    error and on cancellation."""
    negotiator = plain.negotiator
    try:
        await plain.run(handler)
    except BaseException as exc:
        plain.flush()  # a server's error reply or goodbye, if any
        if isinstance(exc, StartTLSError | OSError):
            transport.close()  # after what is buffered
        else:
            transport.abort()  # cancelled, or the handler failed
        raise
    try:
        pair = negotiator.start_tls(config, server_hostname=server_hostname, session=session)
    except SecurePairError as exc:
        # The bytes the client pipelined behind STARTTLS were not TLS.
        failed = negotiator.pair
        if failed is not None and failed.encrypted.pending:
            transport.write(failed.encrypted.read())
        transport.close()
        raise ssl_compatible(exc) from None
    # From here until the TLS protocol is on the transport: no await.
    server_side = negotiator.side is Side.SERVER
    step = negotiator.followup() if followup or server_side else None
    result = StartTLSResult(negotiator.protocol, negotiator, step, plain.pump.pipelined)
    handover = _Handover(step, lambda: make_app(result))
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tls = TLSProtocol(
        handover,
        config,
        server_side=server_side,
        pair=pair,
        waiter=waiter,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    _switch(transport, tls)
    await _await_handshake(waiter, transport, tls)
    try:
        await handover.done
    except BaseException:
        tls.app_transport.abort()
        raise
    assert handover.app is not None
    return tls.app_transport, handover.app, result


# ----------------------------------------------------------------------
# Streams


async def open_starttls_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    protocol: str | ClientNegotiator,
    config: Config,
    server_hostname: str | None = None,
    session: Any = None,
    followup: bool = True,
    limit: int = 2**16,
    timeout: float | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, StartTLSStreamWriter]:
    """Connect, negotiate STARTTLS as a client, complete the handshake and
    ask for the capabilities again inside TLS; return ``(reader, writer)``
    over TLS (``writer.capabilities``, ``writer.starttls``).

    ``protocol`` is a name (``"smtp"``, ``"imap"``...) or a client
    negotiator made with the options you want.  ``server_hostname`` (the
    name verified and sent as SNI) defaults to ``host`` (XMPP: the
    domain).  Other keywords go to ``loop.create_connection`` (``sock=``,
    ``local_addr=``...).  Raises the negotiator's errors
    (:class:`~.errors.StartTLSRefusedError`, :class:`~.errors.InjectionError`
    ...) and the TLS errors; the connection is closed on every error.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    app = _StreamProtocol(reader, loop=loop)
    tls_transport, _, result = await create_starttls_connection(
        lambda: app,
        host,
        port,
        protocol=protocol,
        config=config,
        server_hostname=server_hostname,
        session=session,
        followup=followup,
        timeout=timeout,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        **kwds,
    )
    writer = StartTLSStreamWriter(tls_transport, app, reader, loop)
    writer.starttls = result
    return reader, writer


async def accept_starttls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    protocol: str | ServerNegotiator,
    config: Config,
    *,
    handler: CommandHandler | None = None,
    timeout: float | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> StartTLSResult:
    """Serve the plaintext phase on a plain stream pair (an
    ``asyncio.start_server`` callback's), offering STARTTLS; once the
    client has taken it and the handshake is complete, ``reader`` and
    ``writer`` carry TLS, in place.  Returns the :class:`StartTLSResult`.

    ``protocol`` is a name or a server negotiator made with the options you
    want; ``handler(negotiator, command)`` (a function or a coroutine
    function) answers the plaintext commands the negotiator does not answer
    itself.  Bytes already in ``reader`` are the negotiator's first input.
    Inside TLS, offer each command line to
    ``result.negotiator.answer_in_tls(line)`` first.

    On an error the connection is closed, and ``reader`` sees its end.
    """
    loop = asyncio.get_running_loop()
    negotiator = server_negotiator(protocol)
    transport: Any = writer.transport
    original: Any = transport.get_protocol()
    # asyncio has no public way to take a StreamReader's buffered bytes or
    # to move a stream pair to another transport; upgrade_streams() in
    # securepair.asyncio uses the same private attributes.
    buffered = bytes(reader._buffer)  # type: ignore[attr-defined]
    reader._buffer.clear()  # type: ignore[attr-defined]
    at_eof = bool(reader._eof)  # type: ignore[attr-defined]
    plain = _Plaintext(negotiator)
    transport.set_protocol(plain)
    plain.connection_made(transport)
    if buffered:
        plain.data_received(buffered)
    if at_eof:
        plain.eof_received()
    if not transport.is_reading() and not plain._paused:
        transport.resume_reading()
    app = _StreamProtocol(reader, loop=loop)
    try:
        async with asyncio.timeout(timeout):
            reader._eof = False  # type: ignore[attr-defined]  # TLS reports its own end
            reader._transport = None  # type: ignore[attr-defined]
            reader._paused = False  # type: ignore[attr-defined]
            tls_transport, _, result = await _upgrade(
                transport,
                plain,
                config,
                lambda result: app,
                handler=handler,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
    except BaseException:
        # The old stream protocol no longer hears from the transport: tell
        # it the connection is gone, so that reads end and wait_closed()
        # returns.
        reader._transport = transport  # type: ignore[attr-defined]
        original.connection_lost(None)
        raise
    writer._transport = tls_transport  # type: ignore[attr-defined]
    writer._protocol = app  # type: ignore[attr-defined]
    return result


# ----------------------------------------------------------------------
# Protocols


async def create_starttls_connection(
    protocol_factory: Callable[[], P],
    host: str | None = None,
    port: int | str | None = None,
    *,
    protocol: str | ClientNegotiator,
    config: Config,
    server_hostname: str | None = None,
    session: Any = None,
    followup: bool = True,
    timeout: float | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> tuple[TLSTransport, P, StartTLSResult]:
    """``loop.create_connection`` with STARTTLS: connect, negotiate,
    handshake, follow up; then the protocol ``protocol_factory()`` makes
    gets ``connection_made(tls_transport)`` (and first, as
    ``data_received``, any cleartext that came right after the follow-up).
    Returns ``(tls_transport, app_protocol, result)``; the capabilities are
    ``result.capabilities``.  Arguments as for
    :func:`open_starttls_connection`."""
    loop = asyncio.get_running_loop()
    if server_hostname is None:
        server_hostname = host
    negotiator = client_negotiator(protocol, server_hostname)
    async with asyncio.timeout(timeout):
        transport, plain = await loop.create_connection(
            lambda: _Plaintext(negotiator),
            host,  # type: ignore[arg-type]
            port,  # type: ignore[arg-type]
            **kwds,
        )
        tls_transport, app, result = await _upgrade(
            transport,
            plain,
            config,
            lambda result: protocol_factory(),
            server_hostname=server_hostname,
            session=session,
            followup=followup,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    return tls_transport, app, result  # type: ignore[return-value]


class _ServerPlaintext(_Plaintext):
    """The protocol ``loop.create_server`` makes per connection: runs the
    plaintext phase, then hands the TLS transport to the application."""

    def __init__(
        self,
        app_factory: AppFactory,
        negotiator: ServerNegotiator,
        config: Config,
        handler: CommandHandler | None,
        options: dict[str, Any],
    ) -> None:
        super().__init__(negotiator)
        self._app_factory = app_factory
        self._config = config
        self._handler = handler
        self._options = options
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        transport = self.transport
        assert transport is not None
        timeout = self._options.pop("timeout")
        try:
            async with asyncio.timeout(timeout):
                await _upgrade(
                    transport,
                    self,
                    self._config,
                    self._app_factory,
                    handler=self._handler,
                    **self._options,
                )
        except (OSError, SecurePairError) as exc:
            # As asyncio's start_server does with failed handshakes: the
            # client is gone (the connection is closed), the server goes on.
            logger.debug("STARTTLS with %s failed: %r", transport.get_extra_info("peername"), exc)
        except Exception:
            # The application's handler or factory failed: its bug, logged
            # loudly; the connection is closed.
            logger.exception("STARTTLS server: the application failed")


def starttls_server_protocol(
    app_factory: AppFactory,
    protocol: str | Callable[[], ServerNegotiator],
    config: Config,
    *,
    handler: CommandHandler | None = None,
    timeout: float | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server``: each connection runs
    the plaintext phase (offering STARTTLS, ``handler`` answering the
    commands the negotiator does not), then
    ``app_factory(result)`` makes the application's protocol, which gets
    ``connection_made(tls_transport)``: its first bytes are already inside
    TLS.  ``protocol`` is a name or a function that makes a new server
    negotiator per connection (``lambda: IMAPServer(capabilities=...)``).

    A connection whose negotiation or handshake fails never reaches the
    application; the failure is logged at debug level on the
    ``securepair.starttls`` logger.
    """
    if isinstance(protocol, ServerNegotiator):
        raise TypeError(
            "a server protocol serves many connections: pass the protocol's name or a "
            "function that makes a new negotiator"
        )

    def factory() -> asyncio.Protocol:
        return _ServerPlaintext(
            app_factory,
            server_negotiator(protocol),
            config,
            handler,
            {
                "timeout": timeout,
                "ssl_handshake_timeout": ssl_handshake_timeout,
                "ssl_shutdown_timeout": ssl_shutdown_timeout,
            },
        )

    return factory
