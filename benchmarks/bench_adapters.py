"""The I/O adapters against what people use today, over loopback TCP.

One run, each contender against its anchor in alternating rounds
(``alternate()``), timed by process CPU time.  For asyncio, uvloop and trio
both ends of every connection live in this process (one event loop), so the
time covers the sender's and the receiver's work and a contender cannot
look fast by leaving work to a peer outside the measurement.  Connections
are made once and reused, and every contender runs a warm-up round first,
so what is compared is a long-running process, not first-allocation page
faults.  The ping-pong tables also show the same framework without TLS:
no TLS layer can beat its anchor by more than that ceiling ratio.

* asyncio: ``securepair.asyncio.open_connection``/``start_server`` vs
  asyncio's own TLS (``ssl=`` on the same functions), on asyncio's loop and
  on uvloop (whose TLS is its own Cython implementation);
* blocking sockets: ``securepair.socket.wrap_socket`` vs
  ``SSLContext.wrap_socket``, as the client of a plain ``ssl`` server in a
  child process (the same peer for both; see below why not a thread);
* trio: ``securepair.anyio.TLSStream`` on anyio's trio backend vs
  ``trio.SSLStream`` (the trio loop runs in a second thread);
* Twisted: ``securepair.asyncio`` on asyncio's loop vs Twisted's TLS
  (``TLSMemoryBIOProtocol`` over pyOpenSSL, ``listenSSL``/``connectSSL``)
  on its default reactor, which runs in a second thread.  The loops differ,
  so this row compares what a user gets from either stack, not TLS layers
  alone; pyOpenSSL links the OpenSSL that ``cryptography`` bundles, which
  may differ from the ssl module's (the run notes both).

A section whose anchor is not installed (uvloop, trio, Twisted: ``pip
install -e '.[bench]'``) is skipped with the reason.

Both sides of each comparison use the very same ``ssl.SSLContext`` objects
(the ones the ``TLSConfig`` builds), so the same cipher suite runs; Twisted
gets the same certificate and key and negotiates the same suite (checked).  Bulk
transfers write the given size per application write and count MB/s of
application data; ping-pong sends 64 bytes and waits for them to come back.

    python benchmarks/bench_adapters.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from benchmarks._util import Result, alternate, note, plan, print_table, skip
from securepair import TLSConfig
from securepair import asyncio as sp_asyncio
from securepair import socket as sp_socket

# The anchors are optional: a missing one skips its section.
try:
    import uvloop
except ImportError:  # uvloop is not on every platform
    uvloop = None
try:
    import anyio
    import trio

    from securepair import anyio as sp_anyio
except ImportError:
    trio = None  # type: ignore[assignment]
try:
    import twisted.internet.ssl as twisted_ssl
    from twisted.internet import protocol as twisted_protocol
    from twisted.internet import threads as twisted_threads
except ImportError:
    twisted_ssl = None  # type: ignore[assignment]

MiB = 1 << 20
SIZES = (16 * 1024, 64 * 1024, MiB)
MSG = b"p" * 64
#: Each request: a mode byte (B: bulk, P: ping-pong) and a count.
HEADER = struct.Struct("!cQ")

#: Twisted's target is parity: a TLS stack that loses to Twisted's on the
#: same machine has something left to fix.
SECTIONS = ("asyncio", "uvloop", "blocking", "trio", "twisted")
TARGETS = {
    "asyncio bulk": 1.1,
    "asyncio ping": 1.5,
    "blocking": 0.9,
    "trio": 2.0,
    "twisted": 1.0,
}


class Certs:
    def __init__(self) -> None:
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost")
        self.cert_pem = leaf.cert_chain_pems[0].bytes()
        self.key_pem = leaf.private_key_pem.bytes()
        self.ca_pem = ca.cert_pem.bytes()
        self.server_config = TLSConfig(cert=self.cert_pem, key=self.key_pem)
        self.client_config = TLSConfig(ca=ca.cert_pem.bytes())
        self.server_ctx = self.server_config.stdlib_context(server_side=True)
        self.client_ctx = self.client_config.stdlib_context(server_side=False)


# ----------------------------------------------------------------------
# asyncio streams (asyncio's loop or uvloop)


async def _stream_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            mode, count = HEADER.unpack(await reader.readexactly(HEADER.size))
            if mode == b"B":
                left = count
                while left:
                    data = await reader.read(min(left, MiB))
                    if not data:
                        return
                    left -= len(data)
                writer.write(b"k")
                await writer.drain()
            else:
                for _ in range(count):
                    writer.write(await reader.readexactly(64))
                    await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class StreamClient:
    """One persistent connection; each method is one measured run."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def bulk(self, size: int, total: int) -> float:
        writer = self.writer
        writer.write(HEADER.pack(b"B", total))
        chunk = b"x" * size
        for _ in range(total // size):
            writer.write(chunk)
            await writer.drain()
        await self.reader.readexactly(1)
        return total

    async def ping(self, count: int) -> float:
        writer, reader = self.writer, self.reader
        writer.write(HEADER.pack(b"P", count))
        for _ in range(count):
            writer.write(MSG)
            await writer.drain()
            await reader.readexactly(64)
        return count

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def _asyncio_setup(certs: Certs, ours: bool | None) -> tuple[asyncio.Server, StreamClient]:
    if ours is None:  # no TLS at all: the ceiling
        server = await asyncio.start_server(_stream_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    elif ours:
        server = await sp_asyncio.start_server(
            _stream_server, "127.0.0.1", 0, config=certs.server_config
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await sp_asyncio.open_connection(
            "127.0.0.1", port, config=certs.client_config, server_hostname="localhost"
        )
    else:
        server = await asyncio.start_server(_stream_server, "127.0.0.1", 0, ssl=certs.server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=certs.client_ctx, server_hostname="localhost"
        )
    return server, StreamClient(reader, writer)


def bench_asyncio(
    certs: Certs, loop: asyncio.AbstractEventLoop, flavour: str, total: int, count: int, rounds: int
) -> list[Result]:
    run = loop.run_until_complete
    servers: list[asyncio.Server] = []
    clients: dict[str, StreamClient] = {}
    for name, ours in (("ours", True), ("theirs", False), ("plain", None)):
        server, client = run(_asyncio_setup(certs, ours))
        servers.append(server)
        clients[name] = client
    plain = clients.pop("plain")
    anchor = f"{flavour} TLS (ssl=)"
    results = []
    try:
        for size in SIZES:
            rates = alternate(
                {
                    name: (lambda c=c, size=size: run(c.bulk(size, total)))
                    for name, c in clients.items()
                },
                rounds,
                label=f"{flavour} bulk {size // 1024} KiB",
            )
            results.append(
                Result(
                    f"{flavour} bulk {size // 1024} KiB",
                    "MB/s",
                    rates["ours"] / 1e6,
                    rates["theirs"] / 1e6,
                    anchor,
                    TARGETS["asyncio bulk"],
                )
            )
        rates = alternate(
            {
                name: (lambda c=c: run(c.ping(count)))
                for name, c in {**clients, "plain": plain}.items()
            },
            rounds,
            label=f"{flavour} ping-pong 64 B",
        )
        results.append(
            Result(
                f"{flavour} ping-pong 64 B",
                "rt/s",
                rates["ours"],
                rates["theirs"],
                anchor,
                TARGETS["asyncio ping"],
            )
        )
        # The same streams without TLS: no TLS adapter can exceed this ratio.
        results.append(
            Result(
                f"{flavour} ping-pong, no TLS (ceiling)",
                "rt/s",
                rates["plain"],
                rates["theirs"],
                anchor,
            )
        )
    finally:
        for client in (*clients.values(), plain):
            run(client.close())
        for server in servers:
            server.close()
            run(server.wait_closed())
    return results


# ----------------------------------------------------------------------
# Blocking sockets
#
# A blocking client needs a peer that runs at the same time: in a thread of
# this process, the two would fight over the GIL, and the cost of that fight
# (which depends on how often each side releases the GIL, not on its TLS
# work) would dominate the ping-pong numbers.  So the peer is a plain
# ``ssl`` server in a child process, the same for both contenders, and what
# is timed is this process: the client's side of each exchange.  A bulk
# round uploads and then downloads, so it covers encryption and decryption.


def _recv_exactly(sock: Any, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        count = sock.recv_into(view[got:n])
        if not count:
            raise ConnectionError("peer closed")
        got += count


def _peer_connection(sock: Any) -> None:
    buf = bytearray(MiB)
    view = memoryview(buf)
    try:
        while True:
            _recv_exactly(sock, view, HEADER.size)
            mode, count = HEADER.unpack(view[: HEADER.size])
            if mode == b"B":
                size, total = divmod(count, 1 << 40)
                left = total
                while left:
                    got = sock.recv_into(view[: min(left, size)])
                    if not got:
                        return
                    left -= got
                chunk = view[:size]
                for _ in range(total // size):
                    sock.sendall(chunk)
            else:
                for _ in range(count):
                    _recv_exactly(sock, view, 64)
                    sock.sendall(view[:64])
    except (ConnectionError, OSError):
        pass
    finally:
        sock.close()


def _peer_process(cert: bytes, key: bytes, port_queue: Any) -> None:
    """The child process: a plain ``ssl`` server, one thread per client."""
    config = TLSConfig(cert=cert, key=key)
    ctx = config.stdlib_context(server_side=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port_queue.put(listener.getsockname()[1])
        while True:
            conn, _ = listener.accept()
            tls = ctx.wrap_socket(conn, server_side=True)
            threading.Thread(target=_peer_connection, args=(tls,), daemon=True).start()


class BlockingClient:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.view = memoryview(bytearray(MiB))

    def bulk(self, size: int, total: int) -> float:
        sock = self.sock
        sock.sendall(HEADER.pack(b"B", size << 40 | total))
        chunk = b"x" * size
        for _ in range(total // size):
            sock.sendall(chunk)
        view = self.view[:size]
        left = total
        while left:
            got = sock.recv_into(view[: min(size, left)])
            if not got:
                raise ConnectionError("peer closed")
            left -= got
        return 2 * total

    def ping(self, count: int) -> float:
        sock, view = self.sock, self.view
        sock.sendall(HEADER.pack(b"P", count))
        for _ in range(count):
            sock.sendall(MSG)
            _recv_exactly(sock, view, 64)
        return count


def bench_blocking(certs: Certs, total: int, count: int, rounds: int) -> list[Result]:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    peer = context.Process(
        target=_peer_process, args=(certs.cert_pem, certs.key_pem, port_queue), daemon=True
    )
    peer.start()
    clients: dict[str, BlockingClient] = {}
    results = []
    try:
        port = port_queue.get(timeout=30)
        for name in ("ours", "theirs"):
            raw = socket.create_connection(("127.0.0.1", port))
            if name == "ours":
                tls: Any = sp_socket.wrap_socket(
                    raw, certs.client_config, server_hostname="localhost"
                )
            else:
                tls = certs.client_ctx.wrap_socket(raw, server_hostname="localhost")
            clients[name] = BlockingClient(tls)
        anchor = "SSLContext.wrap_socket"
        for size in SIZES:
            rates = alternate(
                {name: (lambda c=c, size=size: c.bulk(size, total)) for name, c in clients.items()},
                rounds,
                label=f"blocking bulk {size // 1024} KiB",
            )
            results.append(
                Result(
                    f"blocking bulk {size // 1024} KiB",
                    "MB/s",
                    rates["ours"] / 1e6,
                    rates["theirs"] / 1e6,
                    anchor,
                    TARGETS["blocking"],
                )
            )
        rates = alternate(
            {name: (lambda c=c: c.ping(count)) for name, c in clients.items()},
            rounds,
            label="blocking ping-pong 64 B",
        )
        results.append(
            Result(
                "blocking ping-pong 64 B",
                "rt/s",
                rates["ours"],
                rates["theirs"],
                anchor,
                TARGETS["blocking"],
            )
        )
    finally:
        for client in clients.values():
            client.sock.close()
        peer.terminate()
        peer.join(10)
    return results


# ----------------------------------------------------------------------
# trio: our anyio stream on anyio's trio backend vs trio.SSLStream


class TrioEnds:
    """One connection's two ends as send/receive coroutines."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        receive: Callable[[int], Awaitable[bytes]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.send = send
        self.receive = receive
        self.close = close
        self.buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        buffer = self.buffer
        while len(buffer) < n:
            data = await self.receive(65536)
            if not data:
                raise ConnectionError("peer closed")
            buffer += data
        out = bytes(buffer[:n])
        del buffer[:n]
        return out


async def _trio_server(ends: TrioEnds) -> None:
    try:
        while True:
            mode, count = HEADER.unpack(await ends.read_exactly(HEADER.size))
            if mode == b"B":
                left = count - len(ends.buffer)
                ends.buffer.clear()
                while left > 0:
                    data = await ends.receive(65536)
                    if not data:
                        return
                    left -= len(data)
                await ends.send(b"k")
            else:
                for _ in range(count):
                    await ends.send(await ends.read_exactly(64))
    except (ConnectionError, anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    except trio.BrokenResourceError:
        pass


async def _trio_bulk(ends: TrioEnds, size: int, total: int) -> float:
    await ends.send(HEADER.pack(b"B", total))
    chunk = b"x" * size
    for _ in range(total // size):
        await ends.send(chunk)
    await ends.read_exactly(1)
    return total


async def _trio_ping(ends: TrioEnds, count: int) -> float:
    await ends.send(HEADER.pack(b"P", count))
    for _ in range(count):
        await ends.send(MSG)
        await ends.read_exactly(64)
    return count


async def _connect_ours(certs: Certs, nursery: trio.Nursery) -> TrioEnds:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    ready = trio.Event()
    server_ends: list[TrioEnds] = []

    async def accept() -> None:
        stream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        await listener.aclose()
        tls = await sp_anyio.TLSStream.wrap(stream, certs.server_config, server_side=True)
        server_ends.append(_anyio_ends(tls))
        ready.set()
        await _trio_server(server_ends[0])

    nursery.start_soon(accept)
    stream = await anyio.connect_tcp("127.0.0.1", port)
    tls = await sp_anyio.TLSStream.wrap(stream, certs.client_config, server_hostname="localhost")
    await ready.wait()
    return _anyio_ends(tls)


async def _connect_plain(nursery: trio.Nursery) -> TrioEnds:
    """anyio's TCP streams on trio without TLS: the transport ours runs on."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def accept() -> None:
        stream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        await listener.aclose()
        await _trio_server(_anyio_ends(stream))

    nursery.start_soon(accept)
    return _anyio_ends(await anyio.connect_tcp("127.0.0.1", port))


def _anyio_ends(tls: anyio.abc.ByteStream) -> TrioEnds:
    async def receive(n: int) -> bytes:
        try:
            return await tls.receive(n)
        except anyio.EndOfStream:
            return b""

    return TrioEnds(tls.send, receive, tls.aclose)


async def _connect_theirs(certs: Certs, nursery: trio.Nursery) -> TrioEnds:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    ready = trio.Event()

    async def accept() -> None:
        stream = await listeners[0].accept()
        await listeners[0].aclose()
        tls = trio.SSLStream(stream, certs.server_ctx, server_side=True)
        await tls.do_handshake()
        ready.set()
        await _trio_server(TrioEnds(tls.send_all, tls.receive_some, tls.aclose))

    nursery.start_soon(accept)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, certs.client_ctx, server_hostname="localhost")
    await tls.do_handshake()
    await ready.wait()
    return TrioEnds(tls.send_all, tls.receive_some, tls.aclose)


def bench_trio(certs: Certs, total: int, count: int, rounds: int) -> list[Result]:
    state: dict[str, Any] = {}
    started = threading.Event()

    async def trio_main() -> None:
        async with trio.open_nursery() as nursery:
            state["ours"] = await _connect_ours(certs, nursery)
            state["theirs"] = await _connect_theirs(certs, nursery)
            state["plain"] = await _connect_plain(nursery)
            state["token"] = trio.lowlevel.current_trio_token()
            state["stop"] = trio.Event()
            started.set()
            await state["stop"].wait()
            for name in ("ours", "theirs", "plain"):
                with trio.move_on_after(2):
                    await state[name].close()
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(trio_main,))
    thread.start()
    if not started.wait(30):
        raise RuntimeError("trio side did not start")
    token = state["token"]

    def call(fn: Callable[..., Awaitable[float]], *args: Any) -> float:
        return trio.from_thread.run(fn, *args, trio_token=token)  # type: ignore[no-any-return]

    anchor = "trio.SSLStream"
    results = []
    try:
        for size in SIZES:
            rates = alternate(
                {
                    name: (lambda name=name, size=size: call(_trio_bulk, state[name], size, total))
                    for name in ("ours", "theirs")
                },
                rounds,
                label=f"trio bulk {size // 1024} KiB",
            )
            results.append(
                Result(
                    f"trio bulk {size // 1024} KiB",
                    "MB/s",
                    rates["ours"] / 1e6,
                    rates["theirs"] / 1e6,
                    anchor,
                    TARGETS["trio"],
                )
            )
        rates = alternate(
            {
                name: (lambda name=name: call(_trio_ping, state[name], count))
                for name in ("ours", "theirs", "plain")
            },
            rounds,
            label="trio ping-pong 64 B",
        )
        results.append(
            Result(
                "trio ping-pong 64 B",
                "rt/s",
                rates["ours"],
                rates["theirs"],
                anchor,
                TARGETS["trio"],
            )
        )
        # anyio's TCP stream on trio without TLS: the ceiling for any TLS
        # layered on it.
        results.append(
            Result(
                "trio ping-pong, no TLS (ceiling)", "rt/s", rates["plain"], rates["theirs"], anchor
            )
        )
    finally:
        trio.from_thread.run_sync(state["stop"].set, trio_token=token)
        thread.join(30)
    return results


# ----------------------------------------------------------------------
# Twisted: its TLS on its default reactor vs ours on asyncio's loop
#
# Twisted's reactor is the process's one event loop and cannot be started
# twice, so it runs in a second thread for the whole section; each measured
# run is one blockingCallFromThread(), and the asyncio side waits idle
# meanwhile (and the reactor, in epoll, while ours runs), so process CPU
# time still covers exactly one contender's two ends.


if twisted_ssl is not None:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IHandshakeListener, IPushProducer
    from zope.interface import implementer

    class _TwistedServer(twisted_protocol.Protocol):
        """The protocol of ``_stream_server``, as Twisted callbacks."""

        transport: Any

        def connectionMade(self) -> None:
            self.buffer = bytearray()
            self.bulk_left = 0
            self.pings_left = 0

        def dataReceived(self, data: bytes) -> None:
            if self.bulk_left:
                # The common bulk path: count the bytes, copy nothing.
                if len(data) <= self.bulk_left:
                    self.bulk_left -= len(data)
                    if not self.bulk_left:
                        self.transport.write(b"k")
                    return
                data = data[self.bulk_left :]
                self.bulk_left = 0
                self.transport.write(b"k")
            buffer = self.buffer
            buffer += data
            while True:
                if self.pings_left:
                    if len(buffer) < 64:
                        return
                    self.transport.write(bytes(buffer[:64]))
                    del buffer[:64]
                    self.pings_left -= 1
                    continue
                if len(buffer) < HEADER.size:
                    return
                mode, count = HEADER.unpack_from(buffer)
                del buffer[: HEADER.size]
                if mode == b"B":
                    taken = min(count, len(buffer))
                    del buffer[:taken]
                    self.bulk_left = count - taken
                    if self.bulk_left:
                        return
                    self.transport.write(b"k")
                else:
                    self.pings_left = count

    @implementer(IPushProducer)
    class _BulkSender:
        """Writes ``count`` chunks as fast as the transport takes them:
        Twisted's equivalent of ``write()`` + ``await drain()``."""

        def __init__(self, transport: Any, chunk: bytes, count: int) -> None:
            self.transport = transport
            self.chunk = chunk
            self.count = count
            self.paused = False

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False
            write = self.transport.write
            while self.count and not self.paused:
                self.count -= 1
                write(self.chunk)
            if not self.count:
                self.transport.unregisterProducer()
                self.count = -1  # unregister once

        def stopProducing(self) -> None:
            self.count = 0

    @implementer(IHandshakeListener)
    class _TwistedClient(twisted_protocol.Protocol):
        """One persistent connection; each method is one measured run."""

        transport: Any

        def __init__(self, ready: Deferred[Any]) -> None:
            self.ready = ready
            self.done: Deferred[float] | None = None
            self.pings_left = 0
            self.received = 0
            self.result = 0.0

        def handshakeCompleted(self) -> None:
            self.ready.callback(self)

        def bulk(self, size: int, total: int) -> Deferred[float]:
            self.done, self.result = Deferred(), float(total)
            self.transport.write(HEADER.pack(b"B", total))
            sender = _BulkSender(self.transport, b"x" * size, total // size)
            self.transport.registerProducer(sender, True)
            sender.resumeProducing()
            return self.done

        def ping(self, count: int) -> Deferred[float]:
            self.done, self.result = Deferred(), float(count)
            self.pings_left, self.received = count, 0
            self.transport.write(HEADER.pack(b"P", count))
            self.transport.write(MSG)
            return self.done

        def dataReceived(self, data: bytes) -> None:
            if not self.pings_left:
                self._finish()  # the bulk run's b"k"
                return
            self.received += len(data)
            while self.received >= 64 and self.pings_left:
                self.received -= 64
                self.pings_left -= 1
                if self.pings_left:
                    self.transport.write(MSG)
                else:
                    self._finish()

        def _finish(self) -> None:
            done, self.done = self.done, None
            if done is not None:
                done.callback(self.result)


def bench_twisted(
    certs: Certs, loop: asyncio.AbstractEventLoop, total: int, count: int, rounds: int
) -> list[Result]:
    from twisted.internet import reactor as installed
    from twisted.internet.protocol import ClientFactory, Factory

    # The module stands for whichever reactor is installed; its stubs
    # describe none of the methods used here.
    reactor: Any = installed

    if getattr(reactor, "_startedBefore", False):
        skip("twisted", "Twisted's reactor already ran in this process and cannot restart")
        return []
    server_options = twisted_ssl.PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
        certs.key_pem + certs.cert_pem
    ).options()
    client_options = twisted_ssl.optionsForClientTLS(
        "localhost", trustRoot=twisted_ssl.Certificate.loadPEM(certs.ca_pem)
    )
    thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
    )
    thread.start()

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        return twisted_threads.blockingCallFromThread(reactor, fn, *args)

    def connect() -> Any:
        listening = reactor.listenSSL(
            0, Factory.forProtocol(_TwistedServer), server_options, interface="127.0.0.1"
        )
        ready: Deferred[Any] = Deferred()
        factory = ClientFactory.forProtocol(lambda: _TwistedClient(ready))
        reactor.connectSSL("127.0.0.1", listening.getHost().port, factory, client_options)
        return ready.addCallback(lambda client: (listening, client))

    run = loop.run_until_complete
    listening, theirs = call(connect)
    server, ours = run(_asyncio_setup(certs, True))
    handle = theirs.transport.getHandle()
    their_cipher = f"{handle.get_protocol_version_name()} {handle.get_cipher_name()}"
    name, version, _bits = ours.writer.get_extra_info("cipher")
    note(
        f"Twisted {twisted_version()} negotiated {their_cipher} with"
        f" {handle_openssl_version()}; ours {version} {name} with"
        f" {' '.join(ssl.OPENSSL_VERSION.split()[:2])}"
    )
    anchor = "Twisted TLS (pyOpenSSL)"
    contenders_bulk = {
        "ours": lambda size: run(ours.bulk(size, total)),
        "theirs": lambda size: call(theirs.bulk, size, total),
    }
    results = []
    try:
        for size in SIZES:
            rates = alternate(
                {key: (lambda f=f, size=size: f(size)) for key, f in contenders_bulk.items()},
                rounds,
                label=f"twisted bulk {size // 1024} KiB",
            )
            results.append(
                Result(
                    f"asyncio vs Twisted bulk {size // 1024} KiB",
                    "MB/s",
                    rates["ours"] / 1e6,
                    rates["theirs"] / 1e6,
                    anchor,
                    TARGETS["twisted"],
                )
            )
        rates = alternate(
            {
                "ours": lambda: run(ours.ping(count)),
                "theirs": lambda: call(theirs.ping, count),
            },
            rounds,
            label="twisted ping-pong 64 B",
        )
        results.append(
            Result(
                "asyncio vs Twisted ping-pong 64 B",
                "rt/s",
                rates["ours"],
                rates["theirs"],
                anchor,
                TARGETS["twisted"],
            )
        )
    finally:
        run(ours.close())
        server.close()
        run(server.wait_closed())

        def close() -> Any:
            theirs.transport.loseConnection()
            return listening.stopListening()

        call(close)
        reactor.callFromThread(reactor.stop)
        thread.join(30)
    return results


def twisted_version() -> str:
    import twisted

    return str(twisted.__version__)


def handle_openssl_version() -> str:
    from OpenSSL import SSL

    return SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode().rsplit(" ", 3)[0]


# ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Result]:
    """Run every comparison once and print the table; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only these sections (repeatable)",
    )
    args = parser.parse_args(argv)
    scale = 0.125 if args.quick else 1.0
    rounds = 3 if args.quick else 9
    total = int(32 * MiB * scale) // MiB * MiB or MiB
    count = int(4000 * scale)
    sections = args.only or list(SECTIONS)
    missing = {"uvloop": uvloop, "trio": trio, "twisted": twisted_ssl}
    for name, module in missing.items():
        if name in sections and module is None:
            package = "twisted[tls]" if name == "twisted" else name
            skip(name, f"{package} is not installed (pip install -e '.[bench]')")
            sections.remove(name)
    # Each section makes one comparison per bulk size and one ping-pong.
    plan(len(sections) * (len(SIZES) + 1))
    certs = Certs()
    results: list[Result] = []
    if "asyncio" in sections:
        loop = asyncio.new_event_loop()
        try:
            results += bench_asyncio(certs, loop, "asyncio", total, count, rounds)
        finally:
            loop.close()
    if "uvloop" in sections:
        loop = uvloop.new_event_loop()
        try:
            results += bench_asyncio(certs, loop, "uvloop", total, count, rounds)
        finally:
            loop.close()
    if "blocking" in sections:
        results += bench_blocking(certs, total, count, rounds)
    if "trio" in sections:
        results += bench_trio(certs, total, count, rounds)
    if "twisted" in sections:
        loop = asyncio.new_event_loop()
        try:
            results += bench_twisted(certs, loop, total, count, rounds)
        finally:
            loop.close()
    print_table(results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
