"""One client connection of ``securepair serve``, from accept to close.

Theory of operation
===================

A connection goes through up to four phases, each of which may end it:

1. **PROXY header** (only from a ``--trusted-proxy``).  The load balancer's
   header names the real client; from then on the allowlist and the logs
   use that address.  A trusted proxy must send one; anybody else who sends
   one is refused, since believing it would let any client pick the address
   the allowlist judges.
2. **Allowlist.**  Direct clients are judged by the listener before a
   transport exists; proxied ones here, on the header's address.  A refused
   client is closed before the TLS handshake begins and logged.
3. **ClientHello.**  The bytes are collected (by :class:`Prelude`, which
   holds them and nothing else) until the whole ClientHello is in, so the
   route can be chosen from its SNI before any certificate is sent.  A peer
   that is not speaking TLS is told so (an HTTP client gets a 400 saying
   the port speaks TLS) and the log shows its first bytes.  The collected
   bytes become the TLS connection's ``initial_data``: nothing read is
   lost or read twice.
4. **Relay.**  After the handshake the plaintext service is dialled (as
   stunnel does, so a scan that never finishes a handshake costs the
   service nothing) and bytes flow both ways through two small protocols
   with back-pressure: when one side's write buffer fills, the other side
   stops reading.  An end of stream on one side is passed on as an end of
   stream (TCP FIN towards the service, close_notify towards the client),
   and the connection closes once both directions have ended or either
   side is gone.

Phases 1-3 and the handshake share one deadline, ``--handshake-timeout``;
the relay has ``--idle-timeout``.  STARTTLS connections replace phases 3-4
by :mod:`.starttls_relay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from .. import records
from ..asyncio import TLSTransport, start_tls
from ..errors import RecordError, SecurePairError
from .log import Log, format_peer
from .proxy_protocol import ProxyProtocolError, looks_like_proxy_header, parse_proxy_header
from .settings import ServeSettings

__all__ = ["Prelude", "ConnectionContext", "serve_connection"]

#: A fatal ``unrecognized_name`` alert (RFC 6066 section 3) as a plaintext
#: record: what a client that asked for a name no route serves receives
#: before the connection closes, as if the TLS stack had refused it.
UNRECOGNIZED_NAME_ALERT = b"\x15\x03\x03\x00\x02\x02\x70"

#: What an HTTP client that forgot the "s" in https gets.
_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 54\r\n\r\nThis port speaks TLS: use https:// instead of http://\n"
)

#: Seconds to dial the plaintext service before giving up on it.
CONNECT_TIMEOUT = 10.0

#: Seconds to wait for the client's close_notify after ours (an idle
#: timeout, a stop, the service's end) before closing anyway.  Short: the
#: relay has nothing left to say, and a client that never answers must not
#: hold a --max-connections slot for asyncio's default 30 s.
SHUTDOWN_TIMEOUT = 5.0


class Prelude(asyncio.Protocol):
    """The protocol of a new connection until TLS takes over: it only
    collects bytes, so the PROXY header and the ClientHello can be parsed
    from :attr:`buffer` and the rest handed to TLS untouched."""

    #: Most bytes held before TLS: the largest PROXY v2 header we accept plus
    #: the largest ClientHello the framer parses.  Reading pauses above it.
    LIMIT = 16 + 4096 + records.MAX_CLIENT_HELLO_LENGTH + 64

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self.LIMIT and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the write side: the peer may still get an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self) -> bool:
        """Wait for more bytes; False once none can come."""
        if self.eof or self.lost:
            return False
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        return not self.lost


class ConnectionContext:
    """What every connection of one listener shares."""

    def __init__(self, settings: ServeSettings, log: Log) -> None:
        self.settings = settings
        self.log = log
        #: Relays in progress, so a stop can end them after the grace time.
        self.relays: set[Relay] = set()

    def allows_proxied(self, client: str, proxy: str) -> bool:
        """The allowlist's verdict on ``client``, as reported by ``proxy``.
        A loopback address in a PROXY header is this machine's only when the
        proxy runs here; from a remote balancer it means the balancer's own
        host, which --allow must name."""
        local_proxy = ipaddress.ip_address(proxy.partition("%")[0]).is_loopback
        return self.settings.allowlist.allows(client, localhost=local_proxy)


class Refused(Exception):
    """The connection is ended on purpose; the message is the log reason."""

    def __init__(self, event: str, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.event = event
        self.fields = fields


async def _read_proxy_header(prelude: Prelude) -> tuple[str, int] | None:
    """Parse the PROXY header at the start of the prelude's buffer and
    remove it; the client's address, or None for a LOCAL header (the proxy's
    own health check)."""
    while True:
        try:
            header = parse_proxy_header(prelude.buffer)
        except ProxyProtocolError as exc:
            raise Refused("refused", f"bad PROXY header from a trusted proxy: {exc}") from None
        if header is not None:
            break
        if not await prelude.more():
            raise Refused("refused", "a trusted proxy closed before its PROXY header ended")
    del prelude.buffer[: header.length]
    if header.command != "PROXY" or header.family not in ("TCP4", "TCP6"):
        # LOCAL (a health check), UNKNOWN, UNSPEC or a unix socket: the
        # specification says to use the connection's own addresses.
        return None
    return header.source


async def _read_client_hello(prelude: Prelude) -> records.ClientHello:
    while True:
        failure = records.not_tls_error(prelude.buffer[:64])
        if failure is not None:
            if (
                records.sniff(prelude.buffer).kind == "http-request"
                and prelude.transport is not None
            ):
                prelude.transport.write(_HTTP_ANSWER)
            raise Refused("not-tls", str(failure))
        try:
            found = records.parse_client_hello(prelude.buffer)
        except RecordError as exc:
            raise Refused("bad-client-hello", str(exc)) from None
        if isinstance(found, records.ClientHello):
            return found
        if not await prelude.more():
            if not prelude.buffer:
                raise Refused("closed", "closed without sending anything")
            raise Refused(
                "bad-client-hello",
                f"closed after {len(prelude.buffer)} bytes of an unfinished ClientHello",
            )


class Relay(asyncio.Protocol):
    """The application protocol on the client's TLS transport; it relays to
    the plaintext service through :class:`_ServiceSide`."""

    def __init__(self, ctx: ConnectionContext, peer: str) -> None:
        self.ctx = ctx
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.client: TLSTransport | None = None
        self.service: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.bytes_in = 0
        self.bytes_out = 0
        self.client_eof = False
        self.service_eof = False
        self.client_gone = False
        self.service_gone = False
        self.ended_by = ""
        self._early: list[bytes] = []
        self._last = self.loop.time()
        self._idle: asyncio.TimerHandle | None = None

    # -- the client's side (TLS) -------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._last = self.loop.time()
        if self.service is None:
            self._early.append(data)
            if self.client is not None:
                self.client.pause_reading()
            return
        self.service.write(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.service is not None and not self.service.is_closing():
            if self.service_eof:
                self._end("both sides ended")
            else:
                self.service.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone = True
        if not self.ended_by:
            self.ended_by = "client closed" if exc is None else f"client lost: {exc}"
        if self.service is not None:
            if exc is None:
                self.service.close()
            else:
                self.service.abort()
        self._check_done()

    def pause_writing(self) -> None:
        if self.service is not None:
            self.service.pause_reading()

    def resume_writing(self) -> None:
        if self.service is not None and not self.service.is_closing():
            self.service.resume_reading()

    # -- the service's side ------------------------------------------------

    def attach_service(self, transport: asyncio.Transport) -> None:
        """The service is connected: send what the client already sent."""
        self.service = transport
        for data in self._early:
            transport.write(data)
        self._early.clear()
        if self.client_eof:
            transport.write_eof()
        if self.client is not None and not self.client.is_closing():
            self.client.resume_reading()
        self._arm_idle()

    def service_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self._last = self.loop.time()
        if self.client is not None:
            self.client.write(data)

    def service_eof_received(self) -> None:
        self.service_eof = True
        if self.client_eof:
            self._end("both sides ended")
        elif self.client is not None:
            self.client.write_eof()

    def service_lost(self, exc: Exception | None) -> None:
        self.service_gone = True
        if not self.ended_by:
            self.ended_by = "service closed" if exc is None else f"service lost: {exc}"
        if self.client is not None and not self.client.is_closing():
            self.client.close()
        self._check_done()

    # -- ending ------------------------------------------------------------

    def _arm_idle(self) -> None:
        timeout = self.ctx.settings.idle_timeout
        if timeout > 0:
            self._idle = self.loop.call_at(self._last + timeout, self._idle_check)

    def _idle_check(self) -> None:
        timeout = self.ctx.settings.idle_timeout
        if self.loop.time() - self._last >= timeout:
            self._end(f"idle for {timeout:g} s")
        else:
            self._arm_idle()

    def _end(self, why: str) -> None:
        """End both sides politely: close_notify to the client, FIN to the
        service, each after what is already queued."""
        if not self.ended_by:
            self.ended_by = why
        if self.client is not None and not self.client.is_closing():
            self.client.close()
        if self.service is not None and not self.service.is_closing():
            self.service.close()
        self._check_done()

    def stop(self) -> None:
        """The server is stopping and the grace time is over."""
        self._end("server stopping")

    def _check_done(self) -> None:
        client_done = self.client_gone or self.client is None
        service_done = self.service_gone or self.service is None
        if client_done and service_done:
            if self._idle is not None:
                self._idle.cancel()
            if not self.done.done():
                self.done.set_result(None)
        elif client_done and self.service is not None and not self.service.is_closing():
            self.service.close()


class _ServiceSide(asyncio.Protocol):
    """The protocol on the connection to the plaintext service."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        # Bound once: these run for every chunk.
        self.data_received = relay.service_data  # type: ignore[method-assign]

    def eof_received(self) -> bool:
        self.relay.service_eof_received()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.service_lost(exc)

    def pause_writing(self) -> None:
        if self.relay.client is not None:
            self.relay.client.pause_reading()

    def resume_writing(self) -> None:
        client = self.relay.client
        if client is not None and not client.is_closing():
            client.resume_reading()


class _Echo(Relay):
    """``--echo``: the service is this process, which sends back every byte."""

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.bytes_out += len(data)
        self._last = self.loop.time()
        if self.client is None:
            self._early.append(data)
        else:
            self.client.write(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.client is not None:  # else: ended once attached
            self._end("client ended")
        return True

    # Back-pressure: a client that sends without reading must not make the
    # echoes pile up here; it stops being read until it catches up.
    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None and not self.client.is_closing():
            self.client.resume_reading()


def _tls_fields(client: TLSTransport) -> dict[str, Any]:
    pair = client.pair
    fields: dict[str, Any] = {
        "version": pair.version,
        "cipher": pair.cipher_info()[0],
        "sni": pair.server_name,
        "alpn": pair.alpn_protocol,
    }
    cert = pair.peer_certificate() if pair.peer_certificate_der() is not None else None
    if cert is not None:
        subject = cert.get("subject") if isinstance(cert, dict) else None
        fields["client_cert"] = ",".join(f"{k}={v}" for k, v in (subject or {}).items())
        fields["authorized"] = pair.authorized
        fields["authorization_error"] = pair.authorization_error
    return fields


async def serve_connection(
    ctx: ConnectionContext,
    transport: asyncio.Transport,
    prelude: Prelude,
    peer: tuple[str, int],
    *,
    proxied: bool,
) -> None:
    """Serve one accepted connection to its end; never raises for anything
    the peer or the service did (that is logged)."""
    settings, log = ctx.settings, ctx.log
    loop = asyncio.get_running_loop()
    started = loop.time()
    shown = format_peer(peer)
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            if proxied:
                real = await _read_proxy_header(prelude)
                if real is None:
                    allowed = settings.allowlist.allows(peer[0])
                else:
                    shown = f"{format_peer(real)} via {format_peer(peer)}"
                    allowed = ctx.allows_proxied(real[0], peer[0])
                if not allowed:
                    raise Refused("refused", "not in --allow")
            elif settings.trusted_proxies is not None and settings.starttls is None:
                # (With STARTTLS the server speaks first: a direct client
                # cannot be made to wait for its first byte.  A PROXY line
                # it sends is then a command like any other, refused by the
                # negotiator and never believed.)
                while looks_like_proxy_header(prelude.buffer) is None:
                    if not await prelude.more():
                        break
                if looks_like_proxy_header(prelude.buffer):
                    raise Refused("refused", "sent a PROXY header but is not a --trusted-proxy")
            if settings.starttls is not None:
                from .starttls_relay import serve_starttls

                after_tls = await serve_starttls(ctx, transport, prelude, shown, started)
            else:
                after_tls = None
                hello = await _read_client_hello(prelude)
                target = settings.route_for(hello)
                if target is None and not settings.echo:
                    transport.write(UNRECOGNIZED_NAME_ALERT)
                    raise Refused("no-route", "no --route for this name", sni=hello.server_name)
                relay: Relay = _Echo(ctx, shown) if settings.echo else Relay(ctx, shown)
                client = await start_tls(
                    transport,
                    relay,
                    settings.tls,
                    server_side=True,
                    initial_data=bytes(prelude.buffer),
                    # The deadline above covers the handshake; the adapter's own
                    # timer must not fire first.
                    ssl_handshake_timeout=settings.handshake_timeout + 60,
                    ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
                )
    except Refused as exc:
        log.event(exc.event, shown, reason=str(exc), **exc.fields)
        transport.close()  # after what is queued: an alert, an HTTP answer
        return
    except TimeoutError:
        log.event("timeout", shown, reason="no finished handshake within --handshake-timeout")
        transport.abort()
        return
    except SecurePairError as exc:
        # The adapter has sent the alert and closes the transport itself.
        log.event("handshake-failed", shown, reason=str(exc))
        return
    except OSError as exc:
        log.event("closed", shown, reason=f"before the handshake: {exc}")
        transport.abort()
        return
    except asyncio.CancelledError:
        log.event("closed", shown, reason="cut before the handshake ended: the server stopped")
        transport.abort()
        raise
    if settings.starttls is not None:
        if after_tls is not None:
            await after_tls
        return
    relay.client = client
    if settings.echo:
        # Bytes (and an end) that came with the client's Finished were held
        # until now.
        for data in relay._early:
            client.write(data)
        relay._early.clear()
        if relay.client_eof:
            relay._end("client ended")
    ctx.relays.add(relay)
    try:
        details = _tls_fields(client)
        if settings.echo:
            log.event("connected", shown, **details)
            relay._arm_idle()
            await relay.done
        else:
            assert target is not None
            log.event("connected", shown, service=format_peer(target), **details)
            await _dial(relay, target, loop)
            await relay.done
    except asyncio.CancelledError:
        relay.stop()
        relay.ended_by = "cut: the server stopped"
        raise
    finally:
        ctx.relays.discard(relay)
        log.event(
            "closed",
            shown,
            bytes_in=relay.bytes_in,
            bytes_out=relay.bytes_out,
            seconds=round(loop.time() - started, 3),
            reason=relay.ended_by or None,
        )


async def _dial(relay: Relay, target: tuple[str, int], loop: asyncio.AbstractEventLoop) -> None:
    factory: Callable[[], asyncio.Protocol] = lambda: _ServiceSide(relay)  # noqa: E731
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            service, _ = await loop.create_connection(factory, *target)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        relay.ended_by = f"cannot reach the service {format_peer(target)}: {reason}"
        relay.ctx.log.event("service-unreachable", relay.peer, reason=relay.ended_by)
        relay.service_gone = True
        if relay.client is not None:
            relay.client.close()
        relay._check_done()
        return
    sock = service.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if relay.client_gone:
        service.close()
        return
    relay.attach_service(service)
