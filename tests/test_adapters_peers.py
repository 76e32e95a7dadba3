"""Every I/O adapter against real peers over 127.0.0.1.

* ``openssl s_server`` and ``openssl s_client``, TLS 1.2 and 1.3;
* Python's own ``ssl`` sockets, as server and as client;
* the STARTTLS / PROXY upgrade: the peer's ClientHello arrives in the same
  TCP segment as the plaintext line before it.  Each adapter reads the line
  with its own plaintext API and then upgrades; the handshake must find the
  ClientHello that was already read (asyncio's own ``start_tls`` loses it,
  cpython gh-142352).

The adapters run through ``tests/adapter_harness.py`` (blocking and
non-blocking sockets, asyncio streams on asyncio and uvloop, the anyio
stream on asyncio and trio); asyncio's ``open_connection`` /
``start_server`` and anyio's ``TLSListener`` get their own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

import anyio
import pytest

from tests._tools import require_tool
from tests.adapter_harness import (
    HARNESSES,
    HOST,
    TIMEOUT,
    Certs,
    Harness,
    both,
    make_harness,
)

VERSIONS = ("TLSv1.2", "TLSv1.3")
_OPENSSL_FLAG = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs()


@pytest.fixture(scope="module")
def pem(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The certificates as files, for the external programs."""
    folder = tmp_path_factory.mktemp("pem")
    files = {"ca": certs.ca_pem, "cert": certs.cert_pem, "key": certs.key_pem}
    paths = {}
    for name, data in files.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with make_harness(request.param) as made:
        yield made


class Tool:
    """An external program with its output collected by a thread; always
    terminated (then killed) on exit."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._output = bytearray()
        self._cond = threading.Condition()
        self._done = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._cond:
                self._output += chunk
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return self._output.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (found := regex.search(self._output.decode("utf-8", "replace"))):
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    raise AssertionError(
                        f"{self.argv[:2]} did not print {pattern!r}; output:\n{self.output}"
                    )
                self._cond.wait(remaining)
        return found

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._reader.join(2)


def _connect(harness: Harness, port: int) -> socket.socket:
    return harness.adopt(socket.create_connection((HOST, port), timeout=TIMEOUT))


def _listener(harness: Harness) -> socket.socket:
    return harness.adopt(socket.create_server((HOST, 0)))


# ----------------------------------------------------------------------
# openssl


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("version", VERSIONS)
def test_client_against_openssl_s_server(
    harness: Harness, certs: Certs, pem: dict[str, str], version: str
) -> None:
    openssl = require_tool("openssl")
    argv = [openssl, "s_server", "-accept", f"{HOST}:0", "-cert", pem["cert"], "-key", pem["key"]]
    argv += ["-rev", "-naccept", "1", _OPENSSL_FLAG[version], "-alpn", "echo"]
    with Tool(argv) as server:
        port = int(server.wait_for(rf"ACCEPT {HOST}:(\d+)").group(1))
        client = harness.client(
            _connect(harness, port), certs.client(alpn_protocols=["echo", "other"])
        )
        assert client.inspect(lambda tls: tls.version()) == version
        assert client.inspect(lambda tls: tls.selected_alpn_protocol()) == "echo"
        assert client.inspect(lambda tls: tls.authorized) is True
        big = b"0123456789" * 1000 + b"\n"  # a line over several records
        client.send(b"hello openssl\n" + big)
        assert client.recv_exactly(14) == b"lssnepo olleh\n"
        assert client.recv_exactly(len(big)) == big[-2::-1] + b"\n"
        client.close()
        assert server.wait() == 0
        assert "CONNECTION CLOSED" in server.output


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("version", VERSIONS)
def test_server_against_openssl_s_client(
    harness: Harness, certs: Certs, pem: dict[str, str], version: str
) -> None:
    openssl = require_tool("openssl")
    listener = _listener(harness)
    port = listener.getsockname()[1]
    argv = [openssl, "s_client", "-connect", f"{HOST}:{port}", "-CAfile", pem["ca"]]
    argv += ["-servername", "localhost", "-verify_return_error", "-quiet", _OPENSSL_FLAG[version]]
    with Tool(argv) as client:
        listener.settimeout(TIMEOUT)
        conn, _ = listener.accept()
        harness.adopt(conn)
        server = harness.server(conn, certs.server())
        assert server.inspect(lambda tls: tls.version()) == version
        assert server.inspect(lambda tls: tls.server_name) == "localhost"
        client.write(b"hello from s_client\n")
        line = server.recv_exactly(20)
        assert line == b"hello from s_client\n"
        server.send(b"echo: " + line)
        client.wait_for("echo: hello from s_client")
        server.close()  # close_notify: s_client exits
        assert client.wait() == 0, client.output


# ----------------------------------------------------------------------
# Python's ssl


def _python_server_context(pem: dict[str, str], version: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem["cert"], pem["key"])
    ctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
    return ctx


def _python_client_context(pem: dict[str, str], version: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pem["ca"])
    ctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
    return ctx


def _recv_line(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("version", VERSIONS)
def test_client_against_python_ssl_server(
    harness: Harness, certs: Certs, pem: dict[str, str], version: str
) -> None:
    client_sock, server_sock = harness.socketpair()
    ctx = _python_server_context(pem, version)

    def python_server() -> tuple[bytes, bytes]:
        with ctx.wrap_socket(server_sock, server_side=True) as tls:
            line = _recv_line(tls)
            tls.sendall(b"python says " + line)
            rest = tls.recv(100)  # b"": the client's close_notify
            with contextlib.suppress(OSError):
                tls.unwrap()
            return line, rest

    def client_side() -> bytes:
        client = harness.client(client_sock, certs.client())
        assert client.inspect(lambda tls: tls.version()) == version
        client.send(b"hi there\n")
        reply = client.recv_exactly(21)
        client.close()
        return reply

    (line, rest), reply = both(python_server, client_side)
    assert line == b"hi there\n"
    assert rest == b""
    assert reply == b"python says hi there\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_server_against_python_ssl_client(
    harness: Harness, certs: Certs, pem: dict[str, str], version: str
) -> None:
    client_sock, server_sock = harness.socketpair()
    ctx = _python_client_context(pem, version)

    def python_client() -> tuple[bytes, str | None]:
        with ctx.wrap_socket(client_sock, server_hostname="localhost") as tls:
            tls.sendall(b"hello\n")
            data = b""
            while chunk := tls.recv(65536):  # until the server's close_notify
                data += chunk
            return data, tls.version()

    def server_side() -> None:
        server = harness.server(server_sock, certs.server())
        line = server.recv_exactly(6)
        server.send(b"echo " + line * 1000)
        server.close()

    (data, got_version), _ = both(python_client, server_side)
    assert got_version == version
    assert data == b"echo " + b"hello\n" * 1000


# ----------------------------------------------------------------------
# The upgrade: a ClientHello in the same segment as the line before it


class PythonTLSClient:
    """Python's ``ssl.SSLObject`` driven by hand over a raw socket, so that
    its first flight can be sent glued to a plaintext line."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def first_flight(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        return self.outgoing.read()

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
        self.incoming.write(data)

    def finish_handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._pump()
        self.sock.sendall(self.outgoing.read())

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv(self) -> bytes:
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._pump()

    def close(self) -> None:
        """Send close_notify (without waiting for the peer's) and close."""
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        with contextlib.suppress(OSError):
            self.sock.sendall(self.outgoing.read())
        self.sock.close()


def test_upgrade_with_clienthello_in_the_same_segment(
    harness: Harness, certs: Certs, pem: dict[str, str]
) -> None:
    client_sock, server_sock = harness.socketpair()
    client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = PythonTLSClient(client_sock, _python_client_context(pem, "TLSv1.3"))
    # One sendall of one buffer: one segment on loopback.
    client_sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 443\r\n" + peer.first_flight())

    def peer_side() -> bytes:
        peer.finish_handshake()
        peer.send(b"ping\n")
        reply = peer.recv()
        peer.close()
        return reply

    def server_side() -> bytes:
        line, server = harness.upgrade_server(server_sock, certs.server())
        assert server.recv_exactly(5) == b"ping\n"
        server.send(b"pong\n")
        server.close()
        return line  # type: ignore[no-any-return]

    reply, line = both(peer_side, server_side)
    assert line == b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 443\r\n"
    assert reply == b"pong\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_start_tls_takes_initial_data(certs: Certs, pem: dict[str, str], loop: str) -> None:
    """The transport-level upgrade: a plain Protocol got the line and the
    ClientHello in one data_received, and passes the rest to start_tls."""
    with make_harness(loop) as harness:
        client_sock, server_sock = harness.socketpair()
        peer = PythonTLSClient(client_sock, _python_client_context(pem, "TLSv1.3"))
        client_sock.sendall(b"STARTTLS\n" + peer.first_flight())

        def peer_side() -> bytes:
            peer.finish_handshake()
            peer.send(b"data after upgrade\n")
            reply = peer.recv()
            peer.close()
            return reply

        reply, (line, received) = both(
            peer_side,
            lambda: harness.upgrade_server_protocol(server_sock, certs.server()),  # type: ignore[attr-defined]
        )
    assert line == b"STARTTLS\n"
    assert received == b"data after upgrade\n"
    assert reply == b"echo data after upgrade\n"


# ----------------------------------------------------------------------
# The connection helpers of each async adapter, against openssl


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_open_connection_and_start_server(
    certs: Certs, pem: dict[str, str], loop: str
) -> None:
    from securepair import asyncio as sp_asyncio

    openssl = require_tool("openssl")
    with make_harness(loop) as harness:
        argv = [openssl, "s_server", "-accept", f"{HOST}:0", "-cert", pem["cert"]]
        argv += ["-key", pem["key"], "-rev", "-naccept", "1"]
        with Tool(argv) as s_server:
            port = int(s_server.wait_for(rf"ACCEPT {HOST}:(\d+)").group(1))

            async def client() -> bytes:
                reader, writer = await sp_asyncio.open_connection(
                    HOST, port, config=certs.client(), server_hostname="localhost"
                )
                assert writer.get_extra_info("peercert")["subject"] == (
                    (("commonName", "localhost"),),
                )
                assert writer.get_extra_info("peername")[0] == HOST
                writer.write(b"abc\n")
                line = await reader.readline()
                writer.close()
                await writer.wait_closed()
                return line

            assert harness.call(client) == b"cba\n"  # type: ignore[attr-defined]
            assert s_server.wait() == 0

        async def serve() -> int:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                line = await reader.readline()
                writer.write(b"served " + line)
                writer.close()

            server = await sp_asyncio.start_server(handle, HOST, 0, config=certs.server())
            harness.server_object = server  # type: ignore[attr-defined]
            return server.sockets[0].getsockname()[1]  # type: ignore[no-any-return]

        port = harness.call(serve)  # type: ignore[attr-defined]
        argv = [openssl, "s_client", "-connect", f"{HOST}:{port}", "-CAfile", pem["ca"]]
        argv += ["-servername", "localhost", "-verify_return_error", "-quiet"]
        try:
            with Tool(argv) as s_client:
                s_client.write(b"hello\n")
                s_client.wait_for("served hello")
                assert s_client.wait() == 0
        finally:

            async def stop() -> None:
                server = harness.server_object  # type: ignore[attr-defined]
                server.close()
                await server.wait_closed()

            harness.call(stop)  # type: ignore[attr-defined]


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_listener_and_connect_tcp(certs: Certs, pem: dict[str, str], backend: str) -> None:
    from securepair.anyio import TLSListener, TLSStream

    openssl = require_tool("openssl")

    async def main() -> None:
        listener = TLSListener(
            await anyio.create_tcp_listener(local_host=HOST), certs.server(), handshake_timeout=5
        )
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        served = anyio.Event()

        async def handle(tls: TLSStream) -> None:
            line = await tls.receive()
            await tls.send(b"served " + line)
            await tls.aclose()
            served.set()

        argv = [openssl, "s_client", "-connect", f"{HOST}:{port}", "-CAfile", pem["ca"]]
        argv += ["-servername", "localhost", "-verify_return_error", "-quiet"]
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                with Tool(argv) as s_client:
                    s_client.write(b"hello\n")
                    await served.wait()
                    await anyio.to_thread.run_sync(s_client.wait_for, "served hello")
                tg.cancel_scope.cancel()
        await listener.aclose()

        argv = [openssl, "s_server", "-accept", f"{HOST}:0", "-cert", pem["cert"]]
        argv += ["-key", pem["key"], "-rev", "-naccept", "1"]
        with Tool(argv) as s_server, anyio.fail_after(TIMEOUT):
            match = await anyio.to_thread.run_sync(s_server.wait_for, rf"ACCEPT {HOST}:(\d+)")
            stream = await anyio.connect_tcp(HOST, int(match.group(1)))
            tls = await TLSStream.wrap(stream, certs.client(), server_hostname="localhost")
            assert tls.extra(anyio.streams.tls.TLSAttribute.tls_version) in VERSIONS
            await tls.send(b"xyz\n")
            assert await tls.receive() == b"zyx\n"
            await tls.aclose()

    anyio.run(main, backend=backend)
