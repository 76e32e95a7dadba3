"""One conformance suite for every I/O adapter.

Each test is written once against the blocking :class:`Endpoint` interface
of ``tests/adapter_harness.py`` and runs for every adapter: blocking and
non-blocking sockets, asyncio streams on asyncio's loop and on uvloop, and
the anyio stream on asyncio and on trio (the way trio checks every stream
with one generic suite).  Both ends of a connection are the same adapter,
over real TCP on 127.0.0.1, except where the point of a test is a
misbehaving peer (silent, gone, speaking plaintext), which is then a raw
socket scripted by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time

import pytest

from securepair._adapters import RECV_SIZE
from securepair.errors import (
    CertificateVerificationError,
    NotTLSError,
    RaggedEOFError,
    RemoteProtocolError,
    TLSAlertReceivedError,
    TLSError,
)
from securepair.events import HandshakeComplete
from tests.adapter_harness import (
    HARNESSES,
    TIMEOUT,
    Certs,
    Endpoint,
    Harness,
    both,
    client_hello,
    connect,
    make_harness,
    read_until_eof_or_error,
)

VERSIONS = ("TLSv1.2", "TLSv1.3")


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs()


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> Harness:
    with make_harness(request.param) as made:
        yield made  # type: ignore[misc]


def close_both(client: Endpoint, server: Endpoint) -> None:
    both(client.close, server.close)


# ----------------------------------------------------------------------
# The handshake and the details


@pytest.mark.parametrize("version", VERSIONS)
def test_handshake_and_details(harness: Harness, certs: Certs, version: str) -> None:
    client, server = connect(
        harness,
        certs.client(alpn_protocols=["h2", "http/1.1"], max_version=version),
        certs.server(alpn_protocols=["http/1.1"]),
    )

    def details(tls: object) -> dict[str, object]:
        t: object = tls
        return {
            "version": t.version(),  # type: ignore[attr-defined]
            "cipher": t.cipher(),  # type: ignore[attr-defined]
            "alpn": t.selected_alpn_protocol(),  # type: ignore[attr-defined]
            "alpn_node": t.alpn_protocol,  # type: ignore[attr-defined]
            "authorized": t.authorized,  # type: ignore[attr-defined]
            "server_name": t.server_name,  # type: ignore[attr-defined]
            "der": t.getpeercert(binary_form=True),  # type: ignore[attr-defined]
            "peercert": t.getpeercert(),  # type: ignore[attr-defined]
            "node": t.peer_certificate(),  # type: ignore[attr-defined]
            "events": list(t.events()),  # type: ignore[attr-defined]
            "handshake_event": t.handshake_event,  # type: ignore[attr-defined]
        }

    c = client.inspect(details)
    s = server.inspect(details)
    for d in (c, s):
        assert d["version"] == version
        assert d["cipher"][1] == version  # type: ignore[index]
        assert d["alpn"] == d["alpn_node"] == "http/1.1"
    assert c["authorized"] is True
    assert c["der"] == certs.cert_der
    assert c["peercert"]["subject"] == ((("commonName", "localhost"),),)  # type: ignore[index]
    assert c["node"]["subject"]["CN"] == "localhost"  # type: ignore[index]
    assert s["der"] is None and s["node"] is None
    assert s["server_name"] == "localhost"
    assert any(isinstance(e, HandshakeComplete) for e in c["events"])  # type: ignore[attr-defined]
    assert c["handshake_event"].version == version  # type: ignore[attr-defined]
    close_both(client, server)


@pytest.mark.parametrize("version", VERSIONS)
def test_session_resumption(harness: Harness, certs: Certs, version: str) -> None:
    """The session of one connection resumes on the next (with TLS 1.3 the
    ticket comes after the handshake, with the first data)."""
    client_config = certs.client(max_version=version)
    server_config = certs.server()  # one config: one context, one ticket key
    client, server = connect(harness, client_config, server_config)
    server.send(b"x")
    assert client.recv_exactly(1) == b"x"
    session = client.inspect(lambda tls: tls.session)
    assert client.inspect(lambda tls: tls.session_reused) is False
    close_both(client, server)

    client_sock, server_sock = harness.socketpair()
    client, server = both(
        lambda: harness.client(client_sock, client_config, session=session),
        lambda: harness.server(server_sock, server_config),
    )
    assert client.inspect(lambda tls: tls.session_reused) is True
    assert server.inspect(lambda tls: tls.session_reused) is True
    close_both(client, server)


# ----------------------------------------------------------------------
# Data


SIZES = (1, 2, 100, 16383, 16384, 16385, 65536, 100_003, 1 << 20, 3_000_001)


@pytest.mark.parametrize("version", VERSIONS)
def test_data_of_many_sizes_both_ways(harness: Harness, certs: Certs, version: str) -> None:
    client, server = connect(harness, certs.client(max_version=version), certs.server())
    for size in SIZES:
        data = bytes(i % 251 for i in range(size))

        def client_side(data: bytes = data) -> bytes:
            client.send(data)
            return client.recv_exactly(len(data))

        def server_side(data: bytes = data) -> None:
            got = server.recv_exactly(len(data))
            assert got == data
            server.send(got[::-1])

        echoed, _ = both(client_side, server_side)
        assert echoed == data[::-1], size
    close_both(client, server)


@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_either_way_is_a_clean_eof(harness: Harness, certs: Certs, closer: str) -> None:
    client, server = connect(harness, certs.client(), certs.server())
    first, other = (client, server) if closer == "client" else (server, client)
    first.send(b"last words")

    def other_side() -> bytes:
        data = other.recv_all()
        assert other.recv() == b""  # stays at EOF
        other.close()
        return data

    _, data = both(first.close, other_side)
    assert data == b"last words"


@pytest.mark.parametrize("version", VERSIONS)
def test_half_close(harness: Harness, certs: Certs, version: str) -> None:
    client, server = connect(harness, certs.client(max_version=version), certs.server())

    def client_side() -> bytes:
        client.send(b"request")
        client.send_eof()
        return client.recv_all()

    def server_side() -> None:
        request = server.recv_all()  # the client's close_notify ends it
        server.send(b"reply to " + request)
        server.close()

    reply, _ = both(client_side, server_side)
    assert reply == b"reply to request"
    client.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_unwrap_returns_to_plaintext(harness: Harness, certs: Certs, version: str) -> None:
    client, server = connect(harness, certs.client(max_version=version), certs.server())
    client.send(b"over TLS")
    assert server.recv_exactly(8) == b"over TLS"
    from_server = b"PLAIN FROM SERVER\n"
    from_client = b"PLAIN FROM CLIENT\n"

    def server_side() -> bytes:
        plain, trailing = server.unwrap()
        # Sent right after the close_notify: often in the same segment,
        # so the client's unwrap finds it as trailing data.
        plain.send(from_server)
        got = trailing + plain.recv_exactly(len(from_client) - len(trailing))
        plain.close()
        return got

    def client_side() -> bytes:
        plain, trailing = client.unwrap()
        got = trailing + plain.recv_exactly(len(from_server) - len(trailing))
        plain.send(from_client)
        plain.close()
        return got

    got_by_server, got_by_client = both(server_side, client_side)
    assert got_by_client == from_server
    assert got_by_server == from_client


# ----------------------------------------------------------------------
# Misbehaving peers


@pytest.mark.parametrize("side", ["client", "server"])
def test_handshake_timeout(harness: Harness, certs: Certs, side: str) -> None:
    client_sock, server_sock = harness.socketpair()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        if side == "server":
            harness.server(server_sock, certs.server(), handshake_timeout=0.3)
        else:
            # The server reads the ClientHello and never answers.
            harness.client(client_sock, certs.client(), handshake_timeout=0.3)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("side", ["client", "server"])
def test_peer_disappears_mid_handshake(harness: Harness, certs: Certs, side: str) -> None:
    client_sock, server_sock = harness.socketpair()
    if side == "server":
        client_sock.sendall(client_hello(certs.client())[:40])
        client_sock.close()
        with pytest.raises(RaggedEOFError) as caught:
            harness.server(server_sock, certs.server())
    else:

        def vanishing_server() -> None:
            assert server_sock.recv(65536)  # the ClientHello
            server_sock.close()

        def connect_client() -> None:
            harness.client(client_sock, certs.client())

        with pytest.raises(RaggedEOFError) as caught:
            both(connect_client, vanishing_server)
    assert isinstance(caught.value, RemoteProtocolError)
    assert isinstance(caught.value, ssl.SSLError)  # what SSLSocket users catch


def test_plaintext_client_gets_eof_not_reset(harness: Harness, certs: Certs) -> None:
    """An HTTP client on the TLS port: NotTLSError, and the client reads a
    clean EOF even though it sent more after the server gave up (the
    server drained it), not a connection reset."""
    client_sock, server_sock = harness.socketpair()

    def server_side() -> BaseException:
        with pytest.raises(NotTLSError) as caught:
            harness.server(server_sock, certs.server())
        return caught.value

    def http_client() -> tuple[bytes, object]:
        client_sock.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            client_sock.sendall(b"x" * 65536)
        return read_until_eof_or_error(client_sock)

    error, (_, end) = both(server_side, http_client)
    assert error.kind == "http-request"  # type: ignore[attr-defined]
    assert b"GET / HTTP/1.1" in error.first_bytes  # type: ignore[attr-defined]
    assert isinstance(error, ssl.SSLError)
    assert end == b"", f"the client saw {end!r}, not a clean EOF"


def test_plaintext_server(harness: Harness, certs: Certs) -> None:
    client_sock, server_sock = harness.socketpair()
    server_sock.sendall(b"220 mail.example.com ESMTP ready\r\n")
    with pytest.raises(NotTLSError) as caught:
        harness.client(client_sock, certs.client())
    assert caught.value.kind == "smtp"


@pytest.mark.parametrize("version", VERSIONS)
def test_verification_failure_alert_reaches_the_peer(
    harness: Harness, certs: Certs, version: str
) -> None:
    """The client rejects the server's certificate: it raises
    CertificateVerificationError and the server reads the client's alert
    (an alert, not a reset or a bare EOF)."""
    stranger = Certs()  # another CA: the server's certificate is unknown to it
    client_sock, server_sock = harness.socketpair()
    errors: dict[str, BaseException] = {}

    def run(side: str, fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:
            errors[side] = exc

    both(
        lambda: run(
            "client", lambda: harness.client(client_sock, stranger.client(max_version=version))
        ),
        lambda: run("server", lambda: harness.server(server_sock, certs.server())),
    )
    client_error, server_error = errors.get("client"), errors.get("server")
    assert isinstance(client_error, CertificateVerificationError), client_error
    assert isinstance(client_error, ssl.SSLCertVerificationError)
    assert client_error.code == "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
    assert isinstance(server_error, TLSAlertReceivedError), repr(server_error)
    assert server_error.alert in ("unknown_ca", "bad_certificate", "certificate_unknown")


@pytest.mark.parametrize("allow", [False, True], ids=["strict", "allow_ragged_eof"])
def test_ragged_eof(harness: Harness, certs: Certs, allow: bool) -> None:
    """The peer closes TCP without close_notify (Python's SSLSocket.close()
    does that): an error by default, a plain EOF when the config allows it."""
    client_sock, server_sock = harness.socketpair()
    ctx = certs.server().stdlib_context(server_side=True)

    def python_server() -> None:
        tls = ctx.wrap_socket(server_sock, server_side=True)
        tls.sendall(b"partial answer")
        tls.close()

    client, _ = both(
        lambda: harness.client(client_sock, certs.client(allow_ragged_eof=allow)), python_server
    )
    if allow:
        assert client.recv_all() == b"partial answer"
    else:
        # The data comes first where the API can show it (asyncio's
        # StreamReader raises a stored error before its buffered data).
        received = bytearray()
        with pytest.raises(RaggedEOFError):
            while chunk := client.recv():
                received += chunk
        assert b"partial answer".startswith(received)
    client.close()


def test_cancelled_send_leaves_stream_usable_or_cleanly_broken(
    harness: Harness, certs: Certs
) -> None:
    """A send that cannot finish (the peer is not reading) is cancelled.
    Either the stream goes on with nothing lost, or it is broken on
    purpose: later sends fail and the peer sees an error, never a clean end
    after a silently truncated stream."""
    client, server = connect(harness, certs.client(), certs.server(), buffer=65536)
    data = bytes(i % 253 for i in range(8 << 20))
    outcome = client.cancelled_send(data, after=0.3)
    assert outcome in ("usable", "broken")
    if outcome == "usable":
        _, got = both(lambda: client.send(b"END"), lambda: server.recv_exactly(len(data) + 3))
        assert got == data + b"END"
        close_both(client, server)
        return
    client.close()  # no close_notify after a broken send
    received = bytearray()
    with pytest.raises((RemoteProtocolError, TLSError, ssl.SSLError, OSError)):
        while True:
            chunk = server.recv()
            if not chunk:
                pytest.fail(f"clean EOF after {len(received)} bytes of a broken send")
            received += chunk
    assert data.startswith(received)
    server.close()


def test_nonblocking_recv_raises_want_read(certs: Certs) -> None:
    """The non-blocking socket signals like SSLSocket: want-read when no
    record is complete, and pending() counts what is decrypted already."""
    with make_harness("socket-nb") as harness:
        client, server = connect(harness, certs.client(), certs.server())
        with pytest.raises(ssl.SSLWantReadError):
            client.tls.recv(10)
        server.send(b"abcdefghij" * 3)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                assert client.tls.recv(10) == b"abcdefghij"
                break
            except ssl.SSLWantReadError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert client.tls.pending() == 20
        assert client.tls.recv(100) == b"abcdefghij" * 2
        client.close()
        server.close()


def test_stdlib_clients_use_the_socket_adapter(certs: Certs) -> None:
    """http.client and urllib take a SocketContext where they take an
    SSLContext, and speak HTTPS through TLSSocket (makefile, sendall...)."""
    import http.client
    import http.server
    import threading
    import urllib.request

    from securepair.socket import SocketContext

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello over " + self.connection.version().encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The body comes later, so the client reads it after
            # http.client closed the connection's socket (HTTP/1.0: the
            # response keeps the file from makefile() and reads on).
            time.sleep(0.05)
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server_context = SocketContext(certs.server())
    # Each accepted connection is wrapped, the way ssl users do it.
    original = httpd.get_request

    def get_request() -> tuple[object, object]:
        conn, addr = original()
        return server_context.wrap_socket(conn, server_side=True), addr

    httpd.get_request = get_request  # type: ignore[method-assign,assignment]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        port = httpd.server_address[1]
        client_context = SocketContext(certs.client(allow_ragged_eof=True))
        conn = http.client.HTTPSConnection("localhost", port, context=client_context, timeout=5)  # type: ignore[arg-type]
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"hello over TLSv1.3"
        conn.close()
        with urllib.request.urlopen(
            f"https://localhost:{port}/",
            context=client_context,
            timeout=5,  # type: ignore[arg-type]
        ) as page:
            assert page.read() == b"hello over TLSv1.3"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


def test_stdlib_errors_catch_adapter_failures(certs: Certs) -> None:
    """urllib wraps OSError in URLError: TLS failures from TLSSocket are
    OSErrors (ssl.SSLError) too, so they arrive as URLError."""
    import threading
    import urllib.error
    import urllib.request

    from securepair.socket import SocketContext

    stranger = Certs()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        ctx = certs.server().stdlib_context(server_side=True)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                ctx.wrap_socket(conn, server_side=True)

        thread = threading.Thread(target=serve)
        thread.start()
        with pytest.raises(urllib.error.URLError) as caught:
            urllib.request.urlopen(
                f"https://localhost:{port}/",
                context=SocketContext(stranger.client()),  # type: ignore[arg-type]
                timeout=5,
            )
        thread.join(TIMEOUT)
    assert isinstance(caught.value.reason, CertificateVerificationError)


# ----------------------------------------------------------------------
# Adapter-specific behaviour the generic interface cannot reach


class _RecordingProtocol(asyncio.Protocol):
    """An application protocol that records what the TLS transport does."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.calls: list[str] = []
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return True

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(f"lost {exc!r}")


def _asyncio_end(
    harness: Harness, sock: socket.socket, config: object, *, server_side: bool
) -> tuple[_RecordingProtocol, object]:
    """A TLSProtocol on ``sock`` in the harness's loop, with a recording
    application protocol; starts the handshake and returns at once."""
    from securepair.asyncio import TLSProtocol

    app = _RecordingProtocol()

    async def start() -> object:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        _, tls = await loop.connect_accepted_socket(
            lambda: TLSProtocol(
                app,
                config,
                server_side=server_side,
                server_hostname=None if server_side else "localhost",
                waiter=waiter,
            ),
            sock,
        )
        return waiter, tls

    sock.setblocking(False)
    harness._take(sock)
    waiter, tls = harness.portal.call(start)  # type: ignore[attr-defined]
    return app, (waiter, tls)


def _wait_until(condition: object, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_flow_control_both_ways(certs: Certs, loop: str) -> None:
    """Reading: while the application has paused reading, the plain
    transport stops reading above the high-water mark, and nothing is lost
    when it resumes.  Writing: a peer that does not read pauses the
    application's writing; it resumes when the peer catches up."""
    from securepair import socket as sp_socket

    with make_harness(loop) as harness:
        portal = harness.portal  # type: ignore[attr-defined]
        client_sock, server_sock = harness.socketpair(buffer=65536)
        app, (waiter, tls) = _asyncio_end(harness, server_sock, certs.server(), server_side=True)
        client_sock.settimeout(TIMEOUT)
        peer = sp_socket.wrap_socket(client_sock, certs.client(), server_hostname="localhost")
        _wait_until(waiter.done, "the handshake")  # type: ignore[attr-defined]
        transport = tls.app_transport  # type: ignore[attr-defined]
        raw = transport.transport

        # Reading.
        portal.call(transport.set_read_buffer_limits, 64 * 1024)
        portal.call(transport.pause_reading)
        data = bytes(i % 249 for i in range(3 << 20))
        sender = threading.Thread(target=peer.sendall, args=(data,))
        sender.start()
        _wait_until(lambda: not portal.call(raw.is_reading), "the plain transport to pause")
        held = portal.call(transport.get_read_buffer_size)
        assert 0 < held < 64 * 1024 + 2 * RECV_SIZE
        assert len(app.data) == 0
        time.sleep(0.1)
        assert len(app.data) == 0  # still paused
        portal.call(transport.resume_reading)
        _wait_until(lambda: len(app.data) == len(data), "all the data")
        sender.join(TIMEOUT)
        assert bytes(app.data) == data

        # Writing.
        portal.call(transport.set_write_buffer_limits, 256 * 1024)
        portal.call(transport.write, data)
        assert "pause_writing" in app.calls
        assert portal.call(transport.get_write_buffer_size) > 256 * 1024
        received = bytearray()
        while len(received) < len(data):
            received += peer.recv(1 << 20)
        assert bytes(received) == data
        _wait_until(lambda: "resume_writing" in app.calls, "resume_writing")
        peer.close()
        _wait_until(lambda: "eof" in app.calls, "the peer's close_notify")
        portal.call(transport.close)
        _wait_until(lambda: any(c.startswith("lost") for c in app.calls), "connection_lost")
        assert app.calls[-1] == "lost None"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_full_duplex(certs: Certs, backend: str) -> None:
    """One task receives while another sends, on both ends at once: the
    send turn is shared between them, nothing deadlocks, nothing is lost."""
    import anyio

    from securepair.anyio import TLSStream

    size = 4 << 20
    data = bytes(i % 241 for i in range(size))

    async def main() -> None:
        client_sock, server_sock = socket.socketpair()
        async with anyio.create_task_group() as tg:
            ends: dict[str, TLSStream] = {}

            async def wrap(name: str, sock: socket.socket, **options: object) -> None:
                stream = await anyio.abc.SocketStream.from_socket(sock)
                ends[name] = await TLSStream.wrap(stream, **options)  # type: ignore[arg-type]

            tg.start_soon(
                lambda: wrap("server", server_sock, config=certs.server(), server_side=True)
            )
            tg.start_soon(
                lambda: wrap(
                    "client", client_sock, config=certs.client(), server_hostname="localhost"
                )
            )
        results: dict[str, bytes] = {}

        async def pump(name: str) -> None:
            stream = ends[name]

            async def sender() -> None:
                view = memoryview(data)
                for start in range(0, size, 100_000):
                    await stream.send(view[start : start + 100_000])
                await stream.send_eof()

            async def receiver() -> None:
                got = bytearray()
                async for chunk in stream:
                    got += chunk
                results[name] = bytes(got)

            async with anyio.create_task_group() as inner:
                inner.start_soon(sender)
                inner.start_soon(receiver)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, "client")
                tg.start_soon(pump, "server")
            for stream in ends.values():
                await stream.aclose()
        assert results["client"] == data
        assert results["server"] == data

    anyio.run(main, backend=backend)


def _silent_tls_server(sock: socket.socket, certs: Certs, stop: threading.Event) -> None:
    """Completes the handshake, then neither reads nor closes until told."""
    from securepair import socket as sp_socket

    sock.settimeout(TIMEOUT)
    tls = sp_socket.wrap_socket(sock, certs.server(), server_side=True)
    stop.wait(TIMEOUT)
    tls.close()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop", "anyio-asyncio", "anyio-trio"])
def test_shutdown_timeout_when_the_peer_never_answers(certs: Certs, kind: str) -> None:
    """close() waits for the peer's close_notify only so long, then closes."""
    import anyio

    from securepair import asyncio as sp_asyncio
    from securepair.anyio import TLSStream

    with make_harness(kind) as harness:
        client_sock, server_sock = harness.socketpair()
        stop = threading.Event()
        peer = threading.Thread(target=_silent_tls_server, args=(server_sock, certs, stop))
        peer.start()
        client_sock.setblocking(False)
        harness._take(client_sock)

        async def run() -> float:
            if kind.startswith("anyio"):
                stream = await anyio.abc.SocketStream.from_socket(client_sock)
                tls = await TLSStream.wrap(
                    stream, certs.client(), server_hostname="localhost", shutdown_timeout=0.3
                )
                started = time.monotonic()
                await tls.aclose()
            else:
                _, writer = await sp_asyncio.open_connection(
                    sock=client_sock,
                    config=certs.client(),
                    server_hostname="localhost",
                    ssl_shutdown_timeout=0.3,
                )
                started = time.monotonic()
                writer.close()
                await writer.wait_closed()
            return time.monotonic() - started

        try:
            elapsed = harness.call(run)  # type: ignore[attr-defined]
        finally:
            stop.set()
            peer.join(TIMEOUT)
    assert 0.25 < elapsed < 2.0


def test_smtplib_starttls_over_the_socket_adapter(certs: Certs) -> None:
    """smtplib's STARTTLS with a SocketContext, against a small server that
    upgrades with wrap_socket(initial_data=...) whatever it read past the
    STARTTLS line."""
    import smtplib

    from securepair import socket as sp_socket
    from securepair.socket import SocketContext

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        conn.sendall(b"220 localhost ESMTP test\r\n")
        buffered = b""
        stream: object = conn
        while True:
            while b"\r\n" not in buffered:
                chunk = stream.recv(4096)  # type: ignore[attr-defined]
                if not chunk:
                    return
                buffered += chunk
            line, _, buffered = buffered.partition(b"\r\n")
            seen.append(line)
            verb = line.split(b" ")[0].upper()
            if verb == b"EHLO":
                stream.sendall(b"250-localhost\r\n250 STARTTLS\r\n")  # type: ignore[attr-defined]
            elif verb == b"STARTTLS":
                conn.sendall(b"220 go ahead\r\n")
                stream = sp_socket.wrap_socket(
                    conn, certs.server(), server_side=True, initial_data=buffered
                )
                buffered = b""
            elif verb == b"NOOP":
                stream.sendall(b"250 ok over " + stream.version().encode() + b"\r\n")  # type: ignore[attr-defined]
            elif verb == b"QUIT":
                stream.sendall(b"221 bye\r\n")  # type: ignore[attr-defined]
                stream.close()  # type: ignore[attr-defined]
                return

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
            smtp.starttls(context=SocketContext(certs.client()))  # type: ignore[arg-type]
            code, message = smtp.noop()
            assert (code, message) == (250, b"ok over TLSv1.3")
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert seen[1] == b"STARTTLS"
