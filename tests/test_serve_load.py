"""``securepair serve`` under load, as a subprocess on 127.0.0.1: a thousand
connections held open at once, ten thousand one after another, clients that
never finish their handshake, and SIGTERM while replies are being sent.

After each load the server must be back where it started: every descriptor
closed (``open_fds`` on its pid) and its memory within a stated bound.  The
figures measured (durations, connections per second, descriptors, resident
memory) are printed; ``pytest -s`` shows them.

The whole file is meant to fit in about three minutes on two cores; the
clients and the plaintext services run in the test process, the server in
its own.  Certificates are ECDSA P-256 (:func:`make_certs`), the cheapest
full handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .serve_harness import (
    AsyncService,
    ServeCerts,
    ServeProcess,
    exchange,
    make_certs,
    open_fds,
    rss_kib,
    tls_connect,
)

#: Connections held open at once.
CONCURRENT = 1000
#: Connections made one after another.
SEQUENTIAL = 10_000

#: Descriptors a server may hold after a load beyond the ones it had before
#: any client: the event loop may open one or two of its own lazily (with
#: uvloop, one on /dev/null after the first connection).  A leak of one per
#: connection would show as hundreds or thousands.
FD_SLACK = 3

#: How long the descriptors and the log may take to settle once the last
#: client has gone.
SETTLE = 30.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ServeCerts:
    return make_certs(tmp_path_factory.mktemp("serve-load-certs"))


def _serve(certs: ServeCerts, tmp_path: Path, *args: str) -> ServeProcess:
    return ServeProcess("--data-dir", str(certs.folder), *args, cwd=tmp_path)


def _raise_nofile(needed: int) -> None:
    """The clients and the services of these tests live in this process:
    make sure it may open ``needed`` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _wait_events(serve: ServeProcess, name: str, count: int) -> list[dict[str, Any]]:
    """The ``name`` events, once there are ``count`` of them."""
    deadline = time.monotonic() + SETTLE
    while True:
        found = serve.events(name)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _settled_fds(pid: int, target: int) -> int:
    """Process ``pid``'s descriptor count once it is at most ``target``
    (or what it is when the time is up)."""
    deadline = time.monotonic() + SETTLE
    while (count := open_fds(pid)) > target and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def _no_problems(serve: ServeProcess) -> None:
    bad = [e for e in serve.events() if e["event"] in ("error", "handshake-failed", "timeout")]
    assert not bad, bad[:5]


async def _tls_open(
    port: int, ctx: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost", ssl_handshake_timeout=60
    )


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def _echo_line(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> bytes:
    writer.write(line)
    return await reader.readexactly(len(line))


# ---------------------------------------------------------------------------
# A thousand at once


async def _hold_open(
    port: int, ctx: ssl.SSLContext, count: int, while_open: Callable[[], None]
) -> dict[str, float]:
    """Open ``count`` TLS connections at once; with all of them open, send a
    line on each and read its echo, then call ``while_open()``; then close
    them all.  Returns the time each step took."""
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_tls_open(port, ctx) for _ in range(count)), return_exceptions=True
    )
    opened = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    handshakes = time.perf_counter()
    try:
        assert not failed, f"{len(failed)} of {count} handshakes failed, first: {failed[0]!r}"
        lines = [f"client {i} of {count}\n".encode() for i in range(count)]
        answers = await asyncio.gather(
            *(_echo_line(r, w, line) for (r, w), line in zip(opened, lines, strict=True))
        )
        assert answers == lines
        echoes = time.perf_counter()
        while_open()
    finally:
        closing = time.perf_counter()
        await _close_all([w for _, w in opened])
    return {
        "handshakes": handshakes - started,
        "echoes": echoes - handshakes,
        "close": time.perf_counter() - closing,
    }


def test_thousand_connections_held_open(certs: ServeCerts, tmp_path: Path) -> None:
    # Each connection is a client socket here and an accepted one in the
    # service: two descriptors in this process per connection.
    _raise_nofile(2 * CONCURRENT + 512)
    ctx = certs.client_context()
    with AsyncService() as service, _serve(certs, tmp_path, "--forward", service.address) as serve:
        pid = serve.proc.pid
        fresh_fds, fresh_rss = open_fds(pid), rss_kib(pid)
        peak: dict[str, int] = {}

        def measure() -> None:
            peak["fds"], peak["rss"] = open_fds(pid), rss_kib(pid)

        # The first two rounds warm up: the allocators of Python, glibc and
        # OpenSSL grow to what a thousand connections need and keep it
        # afterwards.  (The first round's 256 KiB receive buffers are mapped
        # and unmapped one by one; freeing them raises glibc's mmap
        # threshold, so from the second round on they come from the heap,
        # which keeps its size.)  The third round must not need more.
        warm_up = asyncio.run(_hold_open(serve.port, ctx, CONCURRENT, lambda: None))
        assert len(_wait_events(serve, "closed", CONCURRENT)) == CONCURRENT
        asyncio.run(_hold_open(serve.port, ctx, CONCURRENT, lambda: None))
        assert len(_wait_events(serve, "closed", 2 * CONCURRENT)) == 2 * CONCURRENT
        warm_fds = _settled_fds(pid, fresh_fds + FD_SLACK)
        warm_rss = rss_kib(pid)

        times = asyncio.run(_hold_open(serve.port, ctx, CONCURRENT, measure))
        closed = _wait_events(serve, "closed", 3 * CONCURRENT)
        after_fds = _settled_fds(pid, fresh_fds + FD_SLACK)
        after_rss = rss_kib(pid)

        print(
            f"\n{CONCURRENT} held open: warm-up {warm_up['handshakes']:.2f} s of handshakes; "
            f"round 3: handshakes {times['handshakes']:.2f} s "
            f"({CONCURRENT / times['handshakes']:.0f}/s), echoes {times['echoes']:.2f} s, "
            f"close {times['close']:.2f} s"
        )
        print(
            f"serve fds: fresh {fresh_fds}, after warm-up {warm_fds}, all open {peak['fds']}, "
            f"after {after_fds}; RSS KiB: fresh {fresh_rss}, after warm-up {warm_rss}, "
            f"all open {peak['rss']}, after {after_rss} ({(after_rss - warm_rss) / 1024:+.1f} MiB)"
        )
        # While all were open the server held a client and a service socket
        # for each: they really were open at the same time.
        assert peak["fds"] >= fresh_fds + 2 * CONCURRENT
        assert len(closed) == 3 * CONCURRENT
        assert service.connections == 3 * CONCURRENT
        assert warm_fds <= fresh_fds + FD_SLACK
        assert after_fds <= fresh_fds + FD_SLACK
        # Allocators keep freed memory, so RSS does not fall back to where
        # it started; what it must not do is grow round after round.  A
        # thousand connections take about 400 MiB (see "all open": mostly
        # the adapter's 256 KiB receive buffer per connection), so a leak of
        # even a tenth of that would add 40 MiB here.  Small leaks are the
        # business of the sequential test below, which multiplies them by
        # ten thousand.  Connections are freed as they end, not at the next
        # full collection: see test_finished_connections_leave_no_cycles.
        assert after_rss - warm_rss < 30 * 1024
        _no_problems(serve)
        assert serve.stop() == 0


# ---------------------------------------------------------------------------
# Ten thousand in a row

#: Slowest acceptable rate for the sequential test, connections per second:
#: a full TLS 1.3 handshake, one echo and a clean close each.  Measured
#: 575-600/s on a quiet two-core machine and 240/s on one busy with other
#: work; 100/s leaves room for a slow CI runner and still fails on a server
#: that stalls per connection (a timer or a blocking call of a few
#: milliseconds).
MIN_RATE = 100

#: How much the server's RSS may grow over the ten thousand connections,
#: after a warm-up of 500.  It does not stay flat: every finished
#: connection waits for Python's cycle collector (see
#: test_finished_connections_leave_no_cycles), and glibc keeps what is
#: freed.  Measured: +13 MiB after 10,000, a saw-tooth that peaks near
#: +21 MiB around 17,500 and falls back; gc.collect() plus malloc_trim()
#: in the server bring it below the warm-up level.  30 MiB still catches a
#: leak of 3 KiB per connection (an SSL object, a socket or a task each).
SEQUENTIAL_RSS_GROWTH_KIB = 30 * 1024


def _one_connection(port: int, ctx: ssl.SSLContext, index: int) -> None:
    """A full handshake, one small exchange, a clean close."""
    line = b"ping %d\n" % index
    tls = tls_connect(port, ctx)
    try:
        assert exchange(tls, line) == line
        tls.unwrap()  # close_notify both ways
    finally:
        tls.close()


def test_ten_thousand_connections_in_sequence(certs: ServeCerts, tmp_path: Path) -> None:
    ctx = certs.client_context()
    warm_up = 500
    with AsyncService() as service, _serve(certs, tmp_path, "--forward", service.address) as serve:
        pid = serve.proc.pid
        fresh_fds = open_fds(pid)
        for i in range(warm_up):
            _one_connection(serve.port, ctx, i)
        assert len(_wait_events(serve, "closed", warm_up)) == warm_up
        warm_fds = _settled_fds(pid, fresh_fds + FD_SLACK)
        warm_rss = rss_kib(pid)

        samples = []
        started = time.perf_counter()
        for i in range(SEQUENTIAL):
            _one_connection(serve.port, ctx, i)
            if (i + 1) % 2500 == 0:
                samples.append(rss_kib(pid))
        seconds = time.perf_counter() - started

        closed = _wait_events(serve, "closed", warm_up + SEQUENTIAL)
        after_fds = _settled_fds(pid, fresh_fds + FD_SLACK)
        after_rss = rss_kib(pid)
        print(
            f"\n{SEQUENTIAL} in sequence: {seconds:.1f} s, {SEQUENTIAL / seconds:.0f} conn/s, "
            f"{seconds / SEQUENTIAL * 1000:.2f} ms each"
        )
        print(
            f"serve fds: fresh {fresh_fds}, after warm-up {warm_fds}, after {after_fds}; "
            f"RSS KiB after warm-up {warm_rss}, every 2500: {samples}, after {after_rss} "
            f"({(after_rss - warm_rss) / 1024:+.1f} MiB)"
        )
        assert len(closed) == warm_up + SEQUENTIAL
        assert all(e["bytes_in"] == e["bytes_out"] > 0 for e in closed)
        assert all(e.get("reason") == "both sides ended" for e in closed), closed[-1]
        assert service.connections == warm_up + SEQUENTIAL
        assert SEQUENTIAL / seconds >= MIN_RATE
        assert after_fds <= fresh_fds + FD_SLACK
        assert after_rss - warm_rss < SEQUENTIAL_RSS_GROWTH_KIB
        _no_problems(serve)
        assert serve.stop() == 0


# ---------------------------------------------------------------------------
# Clients that never finish their handshake

SLOW_CLIENTS = 50
NORMAL_CLIENTS = 200
HANDSHAKE_TIMEOUT = 2.0


def _client_hello(ctx: ssl.SSLContext) -> bytes:
    """The ClientHello a stdlib client sends, made without a connection."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def _slow_client(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader
) -> tuple[float, bytes]:
    """Wait until the server drops this connection; the seconds that took
    (from now) and what the server sent."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    data = b""
    try:
        async with asyncio.timeout(30):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass  # an abort() with bytes unread ends in a reset instead of a FIN
    dropped = loop.time() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return dropped, data


async def _normal_clients(port: int, ctx: ssl.SSLContext, count: int, streams: int) -> int:
    """``count`` clients (``streams`` at a time), each a handshake and an
    echo; how many got their echo."""
    served = 0

    async def stream(first: int) -> None:
        nonlocal served
        for i in range(first, count, streams):
            reader, writer = await _tls_open(port, ctx)
            line = b"normal %d\n" % i
            try:
                if await _echo_line(reader, writer, line) == line:
                    served += 1
            finally:
                await _close_all([writer])

    await asyncio.gather(*(stream(i) for i in range(streams)))
    return served


async def _slow_and_normal(port: int, ctx: ssl.SSLContext) -> dict[str, Any]:
    hello = _client_hello(ctx)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SLOW_CLIENTS)]
    for i, (_, writer) in enumerate(conns):
        # A third send nothing, a third half a ClientHello, and a third a
        # whole one, then nothing more (the server's reply is not answered).
        if i % 3:
            writer.write(hello if i % 3 == 2 else hello[: len(hello) // 2])
    peers = [f"127.0.0.1:{w.get_extra_info('sockname')[1]}" for _, w in conns]
    loop = asyncio.get_running_loop()
    slow = [asyncio.ensure_future(_slow_client(w, r)) for r, w in conns]
    started = loop.time()
    served = await _normal_clients(port, ctx, NORMAL_CLIENTS, streams=10)
    normal_seconds = loop.time() - started
    still_waiting = sum(not task.done() for task in slow)
    drops = await asyncio.gather(*slow)
    return {
        "peers": peers,
        "served": served,
        "normal_seconds": normal_seconds,
        "still_waiting": still_waiting,
        "drops": drops,
    }


def test_slow_handshakes_time_out_while_others_are_served(
    certs: ServeCerts, tmp_path: Path
) -> None:
    ctx = certs.client_context()
    with (
        AsyncService() as service,
        _serve(
            certs,
            tmp_path,
            "--forward",
            service.address,
            "--handshake-timeout",
            str(HANDSHAKE_TIMEOUT),
        ) as serve,
    ):
        result = asyncio.run(_slow_and_normal(serve.port, ctx))
        timeouts = _wait_events(serve, "timeout", SLOW_CLIENTS)
        closed = _wait_events(serve, "closed", NORMAL_CLIENTS)
        seconds = sorted(d for d, _ in result["drops"])
        print(
            f"\n{NORMAL_CLIENTS} normal clients served in {result['normal_seconds']:.2f} s "
            f"({NORMAL_CLIENTS / result['normal_seconds']:.0f}/s) beside {SLOW_CLIENTS} "
            f"stalled ones ({result['still_waiting']} still waiting when the last was served); "
            f"stalled ones dropped after {seconds[0]:.2f}-{seconds[-1]:.2f} s "
            f"(--handshake-timeout {HANDSHAKE_TIMEOUT:g})"
        )
        assert result["served"] == NORMAL_CLIENTS
        # The normal clients did not wait for the stalled ones to go.
        assert result["normal_seconds"] < HANDSHAKE_TIMEOUT or result["still_waiting"] > 0
        # Nothing for those stuck before their ClientHello was whole; the
        # server's first flight (a handshake record) for the others.
        for i, (_, data) in enumerate(result["drops"]):
            assert data.startswith(b"\x16\x03\x03") if i % 3 == 2 else data == b"", (i, data[:16])
        # Dropped at the timeout: not before it, and not much after (the
        # slack is for a busy machine).
        assert seconds[0] >= HANDSHAKE_TIMEOUT - 0.1
        assert seconds[-1] < HANDSHAKE_TIMEOUT + 3
        assert sorted(e["peer"] for e in timeouts) == sorted(result["peers"])
        assert all("--handshake-timeout" in e["reason"] for e in timeouts)
        assert len(closed) == NORMAL_CLIENTS
        # A stalled client never reached the service.
        assert service.connections == NORMAL_CLIENTS
        assert serve.stop() == 0


# ---------------------------------------------------------------------------
# SIGTERM in the middle of replies

REPLYING_CLIENTS = 100
REPLY_SIZE = 256 * 1024
#: What the service sends before the stop; the rest follows it, in chunks
#: with pauses, so every reply is still being sent while the server stops.
FIRST_PART = 16 * 1024
CHUNK = 16 * 1024
PAUSE = 0.03


def _reply(request: bytes) -> bytes:
    """The reply to one request line: the line repeated, so every client
    can tell its own reply whole and in order."""
    line = request.strip() + b";"
    return (line * (REPLY_SIZE // len(line) + 1))[:REPLY_SIZE]


def test_sigterm_lets_replies_finish(certs: ServeCerts, tmp_path: Path) -> None:
    go_on = asyncio.Event()

    async def stream_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = _reply(await reader.readline())
        writer.write(body[:FIRST_PART])
        await writer.drain()
        await go_on.wait()
        for offset in range(FIRST_PART, REPLY_SIZE, CHUNK):
            writer.write(body[offset : offset + CHUNK])
            await writer.drain()
            await asyncio.sleep(PAUSE)

    ctx = certs.client_context()
    with (
        AsyncService(stream_reply) as service,
        _serve(certs, tmp_path, "--forward", service.address) as serve,
    ):

        async def scenario() -> dict[str, Any]:
            all_replying = asyncio.Event()
            replying = 0

            async def fetch(i: int) -> bool:
                nonlocal replying
                reader, writer = await _tls_open(serve.port, ctx)
                request = b"reply %d\n" % i
                try:
                    writer.write(request)
                    first = await reader.readexactly(FIRST_PART)
                    replying += 1
                    if replying == REPLYING_CLIENTS:
                        all_replying.set()
                    rest = await reader.read()  # up to the close_notify
                    return first + rest == _reply(request)
                finally:
                    await _close_all([writer])

            fetches = asyncio.gather(*(fetch(i) for i in range(REPLYING_CLIENTS)))
            async with asyncio.timeout(60):
                await all_replying.wait()
            serve.proc.send_signal(signal.SIGTERM)
            stop_sent = time.perf_counter()
            stopping = await asyncio.to_thread(
                serve.wait_for, lambda e: e.get("event") == "stopping"
            )
            # No new clients once stopping.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(serve.address, timeout=5).close()
            service.call(go_on.set)
            async with asyncio.timeout(60):
                whole = await fetches
            status = await asyncio.to_thread(serve.proc.wait, 60)
            return {
                "whole": whole,
                "stopping": stopping,
                "status": status,
                "exit_seconds": time.perf_counter() - stop_sent,
            }

        result = asyncio.run(scenario())
        closed = serve.events("closed")
        print(
            f"\nSIGTERM with {REPLYING_CLIENTS} replies of {REPLY_SIZE // 1024} KiB in flight: "
            f"{sum(result['whole'])} arrived whole, serve exited {result['status']} "
            f"{result['exit_seconds']:.2f} s after the signal"
        )
        assert result["whole"] == [True] * REPLYING_CLIENTS
        assert result["status"] == 0
        assert serve.stop() == 0
        assert result["stopping"]["connections"] == REPLYING_CLIENTS
        assert [e.get("reason") for e in serve.events("stopping")] == [None]
        assert len(closed) == REPLYING_CLIENTS
        assert all(e["bytes_out"] == REPLY_SIZE for e in closed)
        assert serve.events("stopped")


# ---------------------------------------------------------------------------
# Memory is given back when a connection ends, not at the next full collection


#: Classes that hold a connection's buffers (the adapter's receive buffer is
#: 256 KiB): none may outlive its connection.
CONNECTION_CLASSES = ("TLSProtocol", "TLSTransport", "SecurePair", "Relay")


def test_finished_connections_leave_no_cycles(certs: ServeCerts) -> None:
    """The server's connection objects are freed by reference counting when
    the connection ends.  Objects in reference cycles wait for Python's
    full collection, which under load runs rarely: a serve that held 1,000
    connections and then another 1,000 is measured at about 800 MiB instead
    of 400.  Run in this process, with the collector off, so that what is
    left after the connections is exactly what only the collector could
    free."""
    from securepair.server.listener import Listener, bind
    from securepair.server.log import Log
    from securepair.server.settings import load

    count = 20
    ctx = certs.client_context()

    def lingering() -> dict[str, int]:
        found = dict.fromkeys(CONNECTION_CLASSES, 0)
        for obj in gc.get_objects():
            name = type(obj).__name__
            if name in found and type(obj).__module__.startswith("securepair"):
                found[name] += 1
        return found

    async def scenario(address: str) -> dict[str, int]:
        settings = load(
            {"listen": "127.0.0.1:0", "forward": address, "data-dir": str(certs.folder)}
        )
        server = Listener(
            settings, Log("json", stream=io.StringIO()), bind(settings.listen, reuse_port=False)
        )
        serving = asyncio.ensure_future(server.serve())
        await asyncio.sleep(0)
        port = server.address[1]
        try:
            for i in range(count):
                reader, writer = await _tls_open(port, ctx)
                line = b"cycle %d\n" % i
                assert await _echo_line(reader, writer, line) == line
                await _close_all([writer])
            # Failures too, the common case on a public port: a client that
            # does not trust the certificate, and one that is not TLS.
            untrusting = ssl.create_default_context()
            for _ in range(5):
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    reader, writer = await _tls_open(port, untrusting)
                    await _close_all([writer])
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\n\r\n")
                assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
                writer.close()
                await writer.wait_closed()
            async with asyncio.timeout(SETTLE):
                while server.tasks:
                    await asyncio.sleep(0.01)
            return lingering()
        finally:
            server.stop()
            await serving

    with AsyncService() as service:
        gc.collect()
        gc.disable()
        try:
            left = asyncio.run(scenario(service.address))
        finally:
            gc.enable()
    print(f"\nconnection objects left for the cycle collector after {count} connections: {left}")
    assert left == dict.fromkeys(CONNECTION_CLASSES, 0)
