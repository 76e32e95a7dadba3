"""The one-call STARTTLS helpers, over real sockets on 127.0.0.1.

* Our client helper against our server helper, every protocol, for each
  adapter: blocking sockets, asyncio streams, asyncio protocols.  The
  client's follow-up gets the capabilities inside TLS, and data goes both
  ways afterwards.
* The upgrade under coalesced segments, per adapter and side, against a
  raw peer (a plain socket and a sans-IO :class:`~securepair.SecurePair`)
  that controls exactly what each ``send`` carries:

  - our server, legit: the client sends ``a1 STARTTLS\\r\\n`` and its
    ClientHello in one segment; the handshake succeeds and the commands
    sent inside TLS are answered, none lost;
  - our server, injection: ``a1 STARTTLS\\r\\na2 LOGIN ...\\r\\n`` in one
    segment; the pipelined bytes are TLS input, the handshake fails with
    :class:`~securepair.errors.NotTLSError`, LOGIN is never seen by the
    application, the connection is closed;
  - our client, legit: untagged responses and the tagged go-ahead in one
    segment (forgotten, not delivered), then, inside TLS, the follow-up's
    reply and the application's first bytes in one segment (the
    capabilities are the TLS ones; the first bytes reach the application);
  - our client, injection: the go-ahead and a forged response in one
    segment; :class:`~securepair.starttls.InjectionError`, the connection
    closed before any ClientHello.
* The server's handler hook, refusals, and the ends without TLS.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from securepair import SecurePair
from securepair.errors import NotTLSError
from securepair.starttls import (
    PROTOCOLS,
    CommandReceived,
    IMAPClient,
    IMAPServer,
    InjectionError,
    PeerClosedError,
    ServerNegotiator,
    SMTPServer,
    StartTLSRefusedError,
    StartTLSUsageError,
    XMPPServer,
)
from securepair.starttls.asyncio import (
    StartTLSResult,
    accept_starttls,
    create_starttls_connection,
    open_starttls_connection,
    starttls_server_protocol,
)
from securepair.starttls.socket import starttls_client_socket, starttls_server_socket

from .starttls_peers import LINE_PROTOCOLS, PKI, WAIT, app_reply, make_pki, serve_app

NAMES = [name for name, spec in PROTOCOLS.items() if spec.server is not None]
ADAPTERS = ["socket", "streams", "protocol"]


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with make_pki() as made:
        yield made


def _server_negotiator(protocol: str) -> ServerNegotiator | str:
    return XMPPServer("localhost") if protocol == "xmpp" else protocol


def _run_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target`` in a thread; its result or exception lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _join(thread: threading.Thread, out: dict[str, Any]) -> Any:
    thread.join(WAIT)
    assert not thread.is_alive(), "the peer thread did not finish"
    if "error" in out:
        raise out["error"]
    return out.get("result")


# ----------------------------------------------------------------------
# The application inside TLS, for the asyncio servers


async def _stream_app(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, result: StartTLSResult, name: str
) -> None:
    negotiator = result.negotiator
    assert isinstance(negotiator, ServerNegotiator)
    if name in LINE_PROTOCOLS:
        while True:
            line = await reader.readline()
            if not line:
                break
            answer = negotiator.answer_in_tls(line)
            if answer is not None:
                writer.write(answer)
                continue
            reply, done = app_reply(name, line)
            writer.write(reply)
            if done:
                break
    else:
        data = await reader.read(65536)
        writer.write(b"ECHO " + data)
    await writer.drain()
    writer.close()


class _ProtocolApp(asyncio.Protocol):
    """A line-echo application protocol, for the protocol adapter; with a
    result it is the server side (answers), without it the client side
    (collects)."""

    def __init__(self, result: StartTLSResult | None = None, name: str = "") -> None:
        self.result = result
        self.name = name
        self.buffer = b""
        self.transport: Any = None
        self.closed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.result is None:
            return
        negotiator = self.result.negotiator
        assert isinstance(negotiator, ServerNegotiator)
        if self.name not in LINE_PROTOCOLS:
            self.transport.write(b"ECHO " + self.buffer)
            self.transport.close()
            return
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            line += b"\n"
            answer = negotiator.answer_in_tls(line)
            if answer is None:
                reply, done = app_reply(self.name, line)
                self.transport.write(reply)
                if done:
                    self.transport.close()
                    return
            else:
                self.transport.write(answer)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(self.buffer)


# ----------------------------------------------------------------------
# Our client against our server, every protocol, every adapter


def _client_script(name: str) -> tuple[bytes, bytes]:
    """(what the client sends inside TLS, what it must read back)."""
    if name not in LINE_PROTOCOLS:
        return b"ping", b"ECHO ping"
    command = {"imap": b"t1 NOOP\r\n", "nntp": b"DATE\r\n"}.get(name, b"NOOP\r\n")
    quit_ = {"imap": b"t2 LOGOUT\r\n", "sieve": b"LOGOUT\r\n"}.get(name, b"QUIT\r\n")
    first = app_reply(name, command)[0]
    return command + quit_, first + app_reply(name, quit_)[0]


@pytest.mark.parametrize("name", NAMES)
def test_socket_client_and_server(pki: PKI, name: str) -> None:
    send, expect = _client_script(name)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> tuple[str | None, list[bytes]]:
            conn, _ = listener.accept()
            seen: list[bytes] = []
            with starttls_server_socket(
                conn, _server_negotiator(name), pki.server_config(), timeout=WAIT
            ) as tls:
                serve_app(tls, name, seen)
                return tls.capabilities and tls.capabilities[0], seen

        thread, out = _run_thread(serve)
        with starttls_client_socket(
            ("127.0.0.1", port),
            name,
            pki.client_config(),
            server_hostname="localhost",
            timeout=WAIT,
        ) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.starttls.protocol == name
            if name in ("ldap", "postgres"):
                assert tls.capabilities is None
            else:
                assert tls.capabilities is not None
                assert "STARTTLS" not in [c.split(" ")[0].upper() for c in tls.capabilities]
            tls.sendall(send)
            got = b""
            while len(got) < len(expect):
                data = tls.recv(65536)
                if not data:
                    break
                got += data
            assert got == expect
        _, seen = _join(thread, out)
        assert b"".join(seen).endswith(send)  # after the follow-up (EHLO, CAPA...)


@pytest.mark.parametrize("name", NAMES)
def test_asyncio_streams_client_and_server(pki: PKI, name: str) -> None:
    send, expect = _client_script(name)

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def client_connected(reader: asyncio.StreamReader, writer: Any) -> None:
            try:
                result = await accept_starttls(
                    reader, writer, _server_negotiator(name), pki.server_config(), timeout=WAIT
                )
                await _stream_app(reader, writer, result, name)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        server = await asyncio.start_server(client_connected, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(WAIT):
            reader, writer = await open_starttls_connection(
                "127.0.0.1",
                port,
                protocol=name,
                config=pki.client_config(),
                server_hostname="localhost",
            )
            if name not in ("ldap", "postgres"):
                assert writer.capabilities is not None
                assert "STARTTLS" not in [c.split(" ")[0].upper() for c in writer.capabilities]
            writer.write(send)
            assert await reader.read() == expect
            writer.close()
            await writer.wait_closed()
            await done

    asyncio.run(main())


@pytest.mark.parametrize("name", NAMES)
def test_asyncio_protocols_client_and_server(pki: PKI, name: str) -> None:
    send, expect = _client_script(name)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        negotiator: Any = (lambda: XMPPServer("localhost")) if name == "xmpp" else name
        factory = starttls_server_protocol(
            lambda result: _ProtocolApp(result, name), negotiator, pki.server_config()
        )
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(WAIT):
            transport, app, result = await create_starttls_connection(
                _ProtocolApp,
                "127.0.0.1",
                port,
                protocol=name,
                config=pki.client_config(),
                server_hostname="localhost",
            )
            assert app.transport is transport
            assert result.negotiator.protocol == name
            transport.write(send)
            assert await app.closed == expect

    asyncio.run(main())


# ----------------------------------------------------------------------
# A raw peer: a plain socket, a sans-IO pair, exact segments


class RawTLS:
    """Drive a :class:`SecurePair` over a blocking socket, by hand."""

    def __init__(self, sock: socket.socket, pair: SecurePair) -> None:
        self.sock = sock
        self.pair = pair

    def flush(self) -> None:
        out = self.pair.encrypted.read()
        if out:
            self.sock.sendall(out)

    def handshake(self) -> None:
        while not self.pair.handshake_complete:
            self.flush()
            data = self.sock.recv(65536)
            assert data, "EOF during the handshake"
            self.pair.encrypted.write(data)
        self.flush()

    def send(self, data: bytes) -> None:
        self.pair.cleartext.write(data)
        self.flush()

    def recv_until(self, marker: bytes) -> bytes:
        got = b""
        while marker not in got:
            got += self.pair.cleartext.read()
            if marker in got:
                break
            data = self.sock.recv(65536)
            assert data, f"EOF before {marker!r}: {got!r}"
            self.pair.encrypted.write(data)
            self.flush()
        return got


def _read_line(sock: socket.socket) -> bytes:
    """One CRLF line, read byte by byte (so nothing after it is taken)."""
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        assert byte, f"EOF after {line!r}"
        line += byte
    return line


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# ----------------------------------------------------------------------
# Coalesced segments: our server


def _raw_imap_client(port: int, pki: PKI, legit: bool) -> bytes:
    """The client's STARTTLS and what follows it in one segment; returns
    what the client read back."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        assert _read_line(sock).startswith(b"* OK [CAPABILITY")
        if not legit:
            sock.sendall(b"a1 STARTTLS\r\na2 LOGIN alice secret\r\n")
            return _read_to_eof(sock)
        pair = SecurePair(pki.client_config(), server_side=False, server_hostname="localhost")
        sock.sendall(b"a1 STARTTLS\r\n" + pair.encrypted.read())  # one segment
        assert _read_line(sock).startswith(b"a1 OK")
        raw = RawTLS(sock, pair)
        raw.handshake()
        raw.send(b"a2 CAPABILITY\r\na3 NOOP\r\na4 LOGOUT\r\n")
        return raw.recv_until(b"a4 OK")


def _check_raw_client(got: bytes, legit: bool) -> None:
    if legit:
        assert b"* CAPABILITY IMAP4rev1\r\na2 OK" in got  # no STARTTLS inside TLS
        assert b"a3 OK ECHO NOOP\r\n" in got
    else:
        # The go-ahead, then TLS's alert (or nothing): LOGIN got no answer.
        assert got.startswith(b"a1 OK")
        assert b"a2 " not in got


def _handler(seen: list[str]) -> Callable[[ServerNegotiator, CommandReceived], None]:
    def handler(negotiator: ServerNegotiator, command: CommandReceived) -> None:
        seen.append(command.command)

    return handler


@pytest.mark.parametrize("legit", [True, False], ids=["clienthello-with-starttls", "injection"])
def test_socket_server_coalesced(pki: PKI, legit: bool) -> None:
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread, out = _run_thread(lambda: _raw_imap_client(port, pki, legit))
        conn, _ = listener.accept()
        if legit:
            with starttls_server_socket(
                conn, IMAPServer(), pki.server_config(), handler=_handler(seen), timeout=WAIT
            ) as tls:
                assert tls.starttls.pipelined > 0  # the ClientHello came with STARTTLS
                lines: list[bytes] = []
                serve_app(tls, "imap", lines)
                assert lines == [b"a2 CAPABILITY\r\n", b"a3 NOOP\r\n", b"a4 LOGOUT\r\n"]
        else:
            with pytest.raises(NotTLSError):
                starttls_server_socket(
                    conn, IMAPServer(), pki.server_config(), handler=_handler(seen), timeout=WAIT
                )
            assert conn.fileno() == -1  # closed
        _check_raw_client(_join(thread, out), legit)
    assert seen == []  # LOGIN never reached the application


@pytest.mark.parametrize("legit", [True, False], ids=["clienthello-with-starttls", "injection"])
def test_asyncio_streams_server_coalesced(pki: PKI, legit: bool) -> None:
    seen: list[str] = []

    async def main() -> None:
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def client_connected(reader: asyncio.StreamReader, writer: Any) -> None:
            try:
                result = await accept_starttls(
                    reader, writer, IMAPServer(), pki.server_config(), handler=_handler(seen)
                )
                assert result.pipelined > 0  # the ClientHello came with STARTTLS
                await _stream_app(reader, writer, result, "imap")
                outcome.set_result(None)
            except BaseException as exc:
                outcome.set_result(exc)
                writer.close()

        server = await asyncio.start_server(client_connected, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(WAIT):
            thread, out = _run_thread(lambda: _raw_imap_client(port, pki, legit))
            error = await outcome
            got = await asyncio.to_thread(_join, thread, out)
        if legit:
            assert error is None
        else:
            assert isinstance(error, NotTLSError)
        _check_raw_client(got, legit)

    asyncio.run(main())
    assert seen == []


@pytest.mark.parametrize("legit", [True, False], ids=["clienthello-with-starttls", "injection"])
def test_asyncio_protocol_server_coalesced(
    pki: PKI, legit: bool, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    apps: list[_ProtocolApp] = []

    def make_app(result: StartTLSResult) -> _ProtocolApp:
        app = _ProtocolApp(result, "imap")
        apps.append(app)
        return app

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        factory = starttls_server_protocol(
            make_app, IMAPServer, pki.server_config(), handler=_handler(seen)
        )
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(WAIT):
            thread, out = _run_thread(lambda: _raw_imap_client(port, pki, legit))
            got: bytes = await asyncio.to_thread(_join, thread, out)
            if legit:
                await apps[0].closed
            return got

    with caplog.at_level(logging.DEBUG, logger="securepair.starttls"):
        got = asyncio.run(main())
    _check_raw_client(got, legit)
    assert seen == []
    if legit:
        assert len(apps) == 1
        assert apps[0].result is not None and apps[0].result.pipelined > 0
    else:
        assert apps == []  # the application never saw the connection
        assert any("NotTLSError" in record.getMessage() for record in caplog.records)


# ----------------------------------------------------------------------
# Coalesced segments: our client


PLAINTEXT_CAPS = b"* CAPABILITY IMAP4rev1 AUTH=FORGED\r\n"


def _raw_imap_server(listener: socket.socket, pki: PKI, legit: bool) -> bytes:
    """Go-ahead coalesced with plaintext before it (legit) or after it
    (injection); inside TLS, the follow-up's reply coalesced with the
    application's first bytes.  Returns what the server read after the
    go-ahead (TLS or nothing)."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(WAIT)
        conn.sendall(b"* OK IMAP4rev1 ready\r\n")
        assert _read_line(conn) == b"a1 STARTTLS\r\n"
        if not legit:
            conn.sendall(b"a1 OK go ahead\r\n" + PLAINTEXT_CAPS + b"a2 OK forged\r\n")
            return _read_to_eof(conn)
        conn.sendall(b"* OK [ALERT] plaintext alert\r\n" + PLAINTEXT_CAPS + b"a1 OK go ahead\r\n")
        pair = SecurePair(pki.server_config(), server_side=True)
        raw = RawTLS(conn, pair)
        raw.handshake()
        assert raw.recv_until(b"\r\n") == b"a2 CAPABILITY\r\n"
        raw.send(
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na2 OK done\r\n* OK first application bytes\r\n"
        )
        got = raw.recv_until(b"a3 LOGOUT\r\n")
        raw.send(b"* BYE\r\na3 OK bye\r\n")
        pair.close()
        raw.flush()
        return got


FIRST_APP_BYTES = b"* OK first application bytes\r\n"
TLS_CAPS = ("IMAP4rev1", "AUTH=PLAIN")


def _check_raw_server(got: bytes, legit: bool) -> None:
    if legit:
        assert got == b"a3 LOGOUT\r\n"
    else:
        assert got == b""  # closed before any ClientHello


@pytest.mark.parametrize("legit", [True, False], ids=["goahead-with-untagged", "injection"])
def test_socket_client_coalesced(pki: PKI, legit: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread, out = _run_thread(lambda: _raw_imap_server(listener, pki, legit))
        if legit:
            with starttls_client_socket(
                ("127.0.0.1", port), IMAPClient(), pki.client_config(), server_hostname="localhost"
            ) as tls:
                assert tls.capabilities == TLS_CAPS
                reader = tls.makefile("rb")
                assert reader.readline() == FIRST_APP_BYTES  # nothing lost
                tls.sendall(b"a3 LOGOUT\r\n")
                assert reader.readline() == b"* BYE\r\n"
                reader.close()
        else:
            with pytest.raises(InjectionError) as caught:
                starttls_client_socket(
                    ("127.0.0.1", port), "imap", pki.client_config(), server_hostname="localhost"
                )
            assert caught.value.injected.startswith(b"* CAPABILITY")
        _check_raw_server(_join(thread, out), legit)


@pytest.mark.parametrize("legit", [True, False], ids=["goahead-with-untagged", "injection"])
def test_asyncio_streams_client_coalesced(pki: PKI, legit: bool) -> None:
    async def main() -> bytes:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            thread, out = _run_thread(lambda: _raw_imap_server(listener, pki, legit))
            async with asyncio.timeout(WAIT):
                if legit:
                    reader, writer = await open_starttls_connection(
                        "127.0.0.1", port, protocol="imap", config=pki.client_config()
                    )
                    assert writer.capabilities == TLS_CAPS
                    assert await reader.readline() == FIRST_APP_BYTES
                    writer.write(b"a3 LOGOUT\r\n")
                    assert await reader.readline() == b"* BYE\r\n"
                    writer.close()
                    await writer.wait_closed()
                else:
                    with pytest.raises(InjectionError):
                        await open_starttls_connection(
                            "127.0.0.1", port, protocol="imap", config=pki.client_config()
                        )
                got: bytes = await asyncio.to_thread(_join, thread, out)
                return got

    _check_raw_server(asyncio.run(main()), legit)


@pytest.mark.parametrize("legit", [True, False], ids=["goahead-with-untagged", "injection"])
def test_asyncio_protocol_client_coalesced(pki: PKI, legit: bool) -> None:
    async def main() -> bytes:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            thread, out = _run_thread(lambda: _raw_imap_server(listener, pki, legit))
            async with asyncio.timeout(WAIT):
                if legit:
                    transport, app, result = await create_starttls_connection(
                        _ProtocolApp, "127.0.0.1", port, protocol="imap", config=pki.client_config()
                    )
                    assert result.capabilities == TLS_CAPS
                    # The bytes behind the follow-up came first, as data_received.
                    assert app.buffer == FIRST_APP_BYTES
                    transport.write(b"a3 LOGOUT\r\n")
                    assert (await app.closed).endswith(b"* BYE\r\na3 OK bye\r\n")
                else:
                    with pytest.raises(InjectionError):
                        await create_starttls_connection(
                            _ProtocolApp,
                            "127.0.0.1",
                            port,
                            protocol="imap",
                            config=pki.client_config(),
                        )
                got: bytes = await asyncio.to_thread(_join, thread, out)
                return got

    _check_raw_server(asyncio.run(main()), legit)


# ----------------------------------------------------------------------
# The handler hook, refusals, ends without TLS


def test_socket_server_handler_answers_plaintext_commands(pki: PKI) -> None:
    """Without require_tls the handler answers what the negotiator does
    not; an unanswered command gets the protocol's default reply."""
    seen: list[str] = []

    def handler(negotiator: ServerNegotiator, command: CommandReceived) -> None:
        seen.append(command.command)
        if command.command == "XHELLO":
            assert isinstance(negotiator, IMAPServer)
            negotiator.reply("OK", "hello from the handler")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                _read_line(sock)
                sock.sendall(b"a1 XHELLO\r\na2 XOTHER\r\n")  # pipelined
                return _read_line(sock) + _read_line(sock)

        thread, out = _run_thread(client)
        conn, _ = listener.accept()
        with pytest.raises(PeerClosedError):
            starttls_server_socket(
                conn, IMAPServer(require_tls=False), pki.server_config(), handler=handler
            )
        got = _join(thread, out)
    assert seen == ["XHELLO", "XOTHER"]
    assert got == b"a1 OK hello from the handler\r\na2 BAD Command unknown or not allowed now\r\n"


def test_asyncio_async_handler(pki: PKI) -> None:
    async def handler(negotiator: ServerNegotiator, command: CommandReceived) -> None:
        await asyncio.sleep(0)
        assert isinstance(negotiator, SMTPServer)
        negotiator.reply(250, "2.0.0 async OK")

    async def main() -> bytes:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def client_connected(reader: asyncio.StreamReader, writer: Any) -> None:
            try:
                await accept_starttls(
                    reader,
                    writer,
                    SMTPServer(require_tls=False),
                    pki.server_config(),
                    handler=handler,
                )
            except BaseException as exc:
                done.set_result(exc)

        server = await asyncio.start_server(client_connected, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.write(b"EHLO c\r\nMAIL FROM:<a@b>\r\nQUIT\r\n")
            got = await reader.read()
            writer.close()
            assert isinstance(await done, PeerClosedError)  # QUIT before STARTTLS
            return got

    got = asyncio.run(main())
    assert b"250 2.0.0 async OK\r\n221" in got


def test_client_refused(pki: PKI) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def server() -> bytes:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"* OK ready\r\n")
                _read_line(conn)
                conn.sendall(b"a1 NO no TLS today\r\n")
                return _read_to_eof(conn)

        thread, out = _run_thread(server)
        with pytest.raises(StartTLSRefusedError):
            starttls_client_socket(("127.0.0.1", port), "imap", pki.client_config())
        assert _join(thread, out) == b""  # closed, nothing sent in plaintext


def test_usage_errors(pki: PKI) -> None:
    with pytest.raises(StartTLSUsageError):
        starttls_client_socket(("127.0.0.1", 1), "gopher", pki.client_config())
    with pytest.raises(StartTLSUsageError):
        starttls_client_socket(
            ("127.0.0.1", 1), IMAPClient(allow_plaintext=True), pki.client_config()
        )
    with socket.socket() as sock, pytest.raises(StartTLSUsageError):
        starttls_server_socket(sock, "xmpp", pki.server_config())  # needs a domain
    with pytest.raises(TypeError):
        starttls_server_protocol(lambda result: asyncio.Protocol(), IMAPServer(), None)  # type: ignore[arg-type]
