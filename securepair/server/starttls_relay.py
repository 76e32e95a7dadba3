"""``securepair serve --starttls PROTO``: the server side of STARTTLS.

The plaintext phase is the negotiator's (:mod:`securepair.starttls`): the
greeting, the capabilities with STARTTLS in them, the go-ahead, and the
RFC's refusal of every other command before TLS.  After the upgrade:

* ``--echo`` answers what the negotiator owns inside TLS (the capability
  command, a second STARTTLS) and echoes every other line, for testing
  clients.
* ``--forward`` dials the plaintext service, reads and drops its own
  greeting (the client was greeted already, in plaintext), and relays, so
  that the client sees one conversation: the service answers the client's
  post-TLS EHLO / CAPABILITY / CAPA.  Only SMTP, IMAP and POP3 are offered
  this way: their greetings have a form that can be recognised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

from ..errors import SecurePairError
from ..starttls import PROTOCOLS
from ..starttls._base import ServerNegotiator
from ..starttls.asyncio import accept_starttls
from ..starttls.errors import StartTLSError
from .log import format_peer
from .relay import SHUTDOWN_TIMEOUT, ConnectionContext, Prelude

__all__ = ["serve_starttls", "read_greeting"]

#: Longest greeting line accepted from the service.
_LINE_LIMIT = 8192


async def read_greeting(protocol: str, reader: asyncio.StreamReader) -> bytes:
    """Read the plaintext service's greeting; raise ``ConnectionError`` if it
    is a refusal or is not the protocol's greeting."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("the service closed before its greeting")
        lines.append(line)
        if protocol == "smtp":
            if not line.startswith(b"220"):
                raise ConnectionError(f"the service refused: {line.strip()!r}")
            if line[3:4] != b"-":
                break
        elif protocol == "imap":
            if not line.upper().startswith((b"* OK", b"* PREAUTH")):
                raise ConnectionError(f"the service refused: {line.strip()!r}")
            break
        else:  # pop3
            if not line.startswith(b"+OK"):
                raise ConnectionError(f"the service refused: {line.strip()!r}")
            break
    return b"".join(lines)


def make_negotiator(protocol: str, hostname: str) -> ServerNegotiator:
    """A fresh server negotiator for ``protocol`` that names the server
    ``hostname`` where the protocol names it."""
    make: Any = PROTOCOLS[protocol].server
    if protocol == "xmpp":
        negotiator: ServerNegotiator = make(domain=hostname)
    elif protocol in ("smtp", "lmtp"):
        negotiator = make(hostname=hostname)
    else:
        negotiator = make()
    return negotiator


def _streams(
    transport: asyncio.Transport, prelude: Prelude
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a transport that :class:`Prelude` has held so far, with
    the bytes it collected as the reader's first bytes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if prelude.buffer:
        protocol.data_received(bytes(prelude.buffer))
        prelude.buffer.clear()
    if prelude.eof:
        protocol.eof_received()
    if not transport.is_reading():
        transport.resume_reading()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class _Activity:
    """When bytes last moved either way, for the idle timeout."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0


async def _read(reader: asyncio.StreamReader, activity: _Activity, idle: float) -> bytes:
    """``reader.read()`` that ends (returns b"") once nothing has moved in
    either direction for ``idle`` seconds."""
    while True:
        if idle <= 0:
            return await reader.read(65536)
        left = activity.last + idle - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            async with asyncio.timeout(left):
                return await reader.read(65536)
        except TimeoutError:
            continue  # the other direction may have moved meanwhile


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    activity: _Activity,
    idle: float,
    inbound: bool,
) -> None:
    while data := await _read(reader, activity, idle):
        activity.last = time.monotonic()
        if inbound:
            activity.bytes_in += len(data)
        else:
            activity.bytes_out += len(data)
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def _echo(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    negotiator: Any,
    activity: _Activity,
    idle: float,
) -> None:
    while True:
        try:
            async with asyncio.timeout(idle if idle > 0 else None):
                line = await reader.readline()
        except ValueError:
            line = await reader.read(_LINE_LIMIT)  # a line too long: echo it in parts
        if not line:
            return
        activity.bytes_in += len(line)
        answer = negotiator.answer_in_tls(line)
        out = line if answer is None else answer
        activity.bytes_out += len(out)
        writer.write(out)
        await writer.drain()


async def serve_starttls(
    ctx: ConnectionContext,
    transport: asyncio.Transport,
    prelude: Prelude,
    shown: str,
    started: float,
) -> Coroutine[Any, Any, None] | None:
    """Take a connection whose TLS begins with ``--starttls PROTO`` through
    the plaintext phase and the handshake.  Returns what serves it after
    that, for the caller to await outside its handshake deadline, or
    ``None`` if the connection already ended (and was logged)."""
    settings, log = ctx.settings, ctx.log
    protocol = settings.starttls
    assert protocol is not None
    reader, writer = _streams(transport, prelude)
    try:
        negotiator = make_negotiator(protocol, settings.hostname)
        result = await accept_starttls(
            reader, writer, negotiator, settings.tls, ssl_shutdown_timeout=SHUTDOWN_TIMEOUT
        )
    except (StartTLSError, SecurePairError) as exc:
        log.event("starttls-failed", shown, protocol=protocol, reason=str(exc))
        writer.close()
        return None
    except OSError as exc:
        log.event("closed", shown, reason=f"before TLS: {exc}")
        writer.close()
        return None
    tls: Any = writer.transport
    pair = tls.pair
    fields: dict[str, Any] = {
        "protocol": protocol,
        "version": pair.version,
        "cipher": pair.cipher_info()[0],
        "sni": pair.server_name,
    }
    return _after_tls(ctx, reader, writer, result, shown, started, fields)


async def _after_tls(  # noqa: PLR0917 - private, called once
    ctx: ConnectionContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    result: Any,
    shown: str,
    started: float,
    fields: dict[str, Any],
) -> None:
    settings, log = ctx.settings, ctx.log
    activity = _Activity()
    idle = settings.idle_timeout
    reason = "client closed"
    service_writer: asyncio.StreamWriter | None = None
    try:
        if settings.echo:
            log.event("connected", shown, **fields)
            await _echo(reader, writer, result.negotiator, activity, idle)
        else:
            assert settings.forward is not None
            target = settings.forward
            try:
                async with asyncio.timeout(10):
                    service_reader, service_writer = await asyncio.open_connection(*target)
                    await read_greeting(result.protocol, service_reader)
            except (OSError, TimeoutError) as exc:
                why = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                reason = f"cannot use the service {format_peer(target)}: {why}"
                log.event("service-unreachable", shown, reason=reason)
                return
            log.event("connected", shown, service=format_peer(target), **fields)
            await asyncio.gather(
                _pump(reader, service_writer, activity, idle, True),
                _pump(service_reader, writer, activity, idle, False),
            )
            reason = "both sides ended"
    except TimeoutError:
        reason = f"idle for {idle:g} s"
    except (OSError, SecurePairError) as exc:
        reason = f"connection lost: {exc}"
    except asyncio.CancelledError:
        reason = "server stopping"
        raise
    finally:
        for w in (service_writer, writer):
            if w is not None and not w.is_closing():
                w.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        log.event(
            "closed",
            shown,
            bytes_in=activity.bytes_in,
            bytes_out=activity.bytes_out,
            seconds=round(asyncio.get_running_loop().time() - started, 3),
            reason=reason,
        )
