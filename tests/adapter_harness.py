"""Every I/O adapter behind one blocking interface, for the generic suites.

The conformance and peer suites are written once, as plain blocking test
code, against :class:`Endpoint` (one end of a TLS connection) and
:class:`Harness` (makes endpoints from connected sockets).  Each harness
drives one adapter:

* ``socket``: :class:`securepair.socket.TLSSocket`, blocking, every call
  bounded by a socket timeout;
* ``socket-nb``: the same object in non-blocking mode, driven by a
  ``selectors`` loop that waits on want-read / want-write;
* ``asyncio`` and ``uvloop``: :mod:`securepair.asyncio` streams;
* ``anyio-asyncio`` and ``anyio-trio``: :class:`securepair.anyio.TLSStream`.

The async harnesses run their event loop in a thread (an anyio blocking
portal); each endpoint call is a coroutine sent to that loop and bounded by
``anyio.fail_after``.  Tests that need both ends active at once (a
handshake, an echo larger than the socket buffers) run them in threads with
:func:`both`.  Every endpoint starts from a connected ``socket.socket``, so
a test can put a raw socket, a scripted peer or an external program at the
other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.from_thread
from cryptography.hazmat.primitives.serialization import Encoding

from securepair import TLSConfig
from securepair import anyio as sp_anyio
from securepair import asyncio as sp_asyncio
from securepair import socket as sp_socket
from securepair.certgen import CertificateAuthority

#: Upper bound, in seconds, for any single wait.
TIMEOUT = 10.0

HOST = "127.0.0.1"

HARNESSES = ("socket", "socket-nb", "asyncio", "uvloop", "anyio-asyncio", "anyio-trio")


class Certs:
    """A CA and a server certificate for localhost and 127.0.0.1."""

    def __init__(self) -> None:
        self.ca = CertificateAuthority("adapter tests CA")
        leaf = self.ca.issue(["localhost", "127.0.0.1"])
        self.cert_pem = leaf.cert_pem
        self.key_pem = leaf.key_pem
        self.cert_der = leaf.certificate.public_bytes(Encoding.DER)
        self.ca_pem = self.ca.cert_pem
        self.client_cert = self.ca.issue(["client"], client=True)

    def server(self, **options: Any) -> TLSConfig:
        return TLSConfig(cert=self.cert_pem, key=self.key_pem, **options)

    def client(self, **options: Any) -> TLSConfig:
        return TLSConfig(ca=self.ca_pem, **options)


def socketpair_tcp(buffer: int | None = None) -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on 127.0.0.1 (client, server); with
    ``buffer``, both kernel buffers are made that small, so a sender blocks
    soon when nobody reads."""
    with socket.create_server((HOST, 0)) as listener:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if buffer:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        client.settimeout(TIMEOUT)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    if buffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    server.settimeout(TIMEOUT)
    return client, server


def both(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    """Run two blocking calls at once; return both results (or raise the
    first error, after both finished)."""
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(first)
        b = pool.submit(second)
        errors = []
        results = []
        for future in (a, b):
            try:
                results.append(future.result(TIMEOUT * 2))
            except BaseException as exc:
                errors.append(exc)
                results.append(None)
        if errors:
            raise errors[0]
        return results[0], results[1]


# ----------------------------------------------------------------------
# The interface


class Plain:
    """The plaintext connection left after an unwrap."""

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def recv(self, n: int = 65536) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def recv_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.recv(n - len(out))
            if not data:
                raise EOFError(f"EOF after {len(out)} of {n} bytes")
            out += data
        return bytes(out)


class Endpoint:
    """One end of a TLS connection made by an adapter."""

    #: The adapter's object (TLSSocket, TLSTransport, TLSStream): details.
    tls: Any

    def inspect(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(self.tls)``, run where the adapter runs (its event loop)."""
        return fn(self.tls)

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def recv(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` at a clean end of data."""
        raise NotImplementedError

    def send_eof(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def unwrap(self) -> tuple[Plain, bytes]:
        """(plaintext connection, bytes that followed the close_notify) -
        for some adapters the bytes are already inside the connection."""
        raise NotImplementedError

    def cancelled_send(self, data: bytes, after: float) -> str:
        """Start sending ``data`` (the peer does not read), cancel after
        ``after`` seconds; "usable" or "broken" as the adapter reports."""
        raise NotImplementedError

    def recv_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.recv(min(n - len(out), 1 << 20))
            if not data:
                raise EOFError(f"EOF after {len(out)} of {n} bytes")
            out += data
        return bytes(out)

    def recv_all(self) -> bytes:
        out = bytearray()
        while data := self.recv():
            out += data
        return bytes(out)


class Harness:
    """Makes endpoints of one adapter from connected sockets.

    The harness owns every socket it makes (:meth:`socketpair`) or is given:
    tests close only the raw peer sockets they script, and never a socket
    an adapter took over.  :meth:`close` first lets the adapters finish
    (an async adapter closes its transport after the failure path's brief
    drain), then closes whatever is left.
    """

    name: str

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._given: list[socket.socket] = []

    def socketpair(self, buffer: int | None = None) -> tuple[socket.socket, socket.socket]:
        """A connected TCP pair (client, server), closed by :meth:`close`."""
        pair = socketpair_tcp(buffer)
        self._sockets.extend(pair)
        return pair

    def adopt(self, sock: socket.socket) -> socket.socket:
        """Close ``sock`` with the harness (a listener, a connection to an
        external program)."""
        self._sockets.append(sock)
        return sock

    def _take(self, sock: socket.socket) -> None:
        self._given.append(sock)

    def _settle(self) -> None:
        """Wait until the adapters closed the sockets they took."""

    def close(self) -> None:
        try:
            self._settle()
        finally:
            for sock in self._sockets:
                sock.close()

    def client(
        self,
        sock: socket.socket,
        config: TLSConfig,
        *,
        server_hostname: str | None = "localhost",
        handshake_timeout: float = TIMEOUT,
        session: Any = None,
    ) -> Endpoint:
        raise NotImplementedError

    def server(
        self,
        sock: socket.socket,
        config: TLSConfig,
        *,
        initial_data: bytes = b"",
        handshake_timeout: float = TIMEOUT,
    ) -> Endpoint:
        """A server end; ``initial_data`` is TLS input already read."""
        raise NotImplementedError

    def upgrade_server(self, sock: socket.socket, config: TLSConfig) -> tuple[bytes, Endpoint]:
        """Read one plaintext line with the adapter's own plaintext API,
        then upgrade to TLS handing over whatever was read beyond it (the
        STARTTLS / PROXY case).  Returns (line, endpoint)."""
        raise NotImplementedError


# ----------------------------------------------------------------------
# Blocking sockets


class SocketPlain(Plain):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int = 65536) -> bytes:
        return self.sock.recv(n)

    def close(self) -> None:
        self.sock.close()


class SocketEndpoint(Endpoint):
    def __init__(self, tls: sp_socket.TLSSocket) -> None:
        self.tls = tls

    def send(self, data: bytes) -> None:
        self.tls.sendall(data)

    def recv(self, n: int = 65536) -> bytes:
        return self.tls.recv(n)

    def send_eof(self) -> None:
        self.tls.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.tls.close()

    def unwrap(self) -> tuple[Plain, bytes]:
        sock, trailing = self.tls.unwrap()
        return SocketPlain(sock), trailing

    def cancelled_send(self, data: bytes, after: float) -> str:
        self.tls.settimeout(after)
        try:
            self.tls.sendall(data)
        except TimeoutError:
            pass
        finally:
            self.tls.settimeout(TIMEOUT)
        try:
            self.tls.sendall(b"?")
        except BrokenPipeError:
            return "broken"
        raise AssertionError("sendall() after an interrupted sendall() did not fail")


class SocketHarness(Harness):
    name = "socket"

    def client(
        self, sock, config, *, server_hostname="localhost", handshake_timeout=TIMEOUT, session=None
    ):  # type: ignore[no-untyped-def]
        self._take(sock)
        sock.settimeout(handshake_timeout)
        tls = sp_socket.wrap_socket(sock, config, server_hostname=server_hostname, session=session)
        tls.settimeout(TIMEOUT)
        return SocketEndpoint(tls)

    def server(self, sock, config, *, initial_data=b"", handshake_timeout=TIMEOUT):  # type: ignore[no-untyped-def]
        self._take(sock)
        sock.settimeout(handshake_timeout)
        tls = sp_socket.wrap_socket(sock, config, server_side=True, initial_data=initial_data)
        tls.settimeout(TIMEOUT)
        return SocketEndpoint(tls)

    def upgrade_server(self, sock, config):  # type: ignore[no-untyped-def]
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("EOF before the plaintext line")
            data += chunk
        line, _, rest = data.partition(b"\n")
        return line + b"\n", self.server(sock, config, initial_data=rest)


class NonBlockingEndpoint(SocketEndpoint):
    """Non-blocking TLSSocket driven by a selector: every operation retries
    after want-read/want-write, as event-loop code does."""

    def _run(self, op: Callable[[], Any], *, timeout: float = TIMEOUT) -> Any:
        return drive_nonblocking(self.tls, op, timeout)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # After want-write the same call is repeated with the same data.
            sent = self._run(lambda view=view: self.tls.send(view))  # type: ignore[misc]
            view = view[sent:]

    def recv(self, n: int = 65536) -> bytes:
        return self._run(lambda: self.tls.recv(n))  # type: ignore[no-any-return]

    def send_eof(self) -> None:
        self._run(lambda: self.tls.shutdown(socket.SHUT_WR))

    def unwrap(self) -> tuple[Plain, bytes]:
        sock, trailing = self._run(self.tls.unwrap)
        return SocketPlain(sock), trailing

    def cancelled_send(self, data: bytes, after: float) -> str:
        deadline = time.monotonic() + after
        view = memoryview(data)
        with contextlib.suppress(ssl.SSLWantWriteError):
            while view and time.monotonic() < deadline:
                # sendall() in non-blocking mode: interrupted by want-write
                # once the kernel is full, how much went is unknown.
                self.tls.sendall(view)
                view = view[len(view) :]
        try:
            self.tls.sendall(b"?")
        except BrokenPipeError:
            return "broken"
        raise AssertionError("sendall() after an interrupted sendall() did not fail")


def drive_nonblocking(tls: sp_socket.TLSSocket, op: Callable[[], Any], timeout: float) -> Any:
    """Call ``op`` until it stops raising want-read/want-write, waiting on
    the socket in between; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        while True:
            try:
                return op()
            except ssl.SSLWantReadError:
                event = selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                event = selectors.EVENT_WRITE
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("non-blocking operation did not complete in time")
            selector.register(tls, event)
            selector.select(remaining)
            selector.unregister(tls)


class NonBlockingHarness(SocketHarness):
    name = "socket-nb"

    def _wrap(self, sock, config, timeout, **options):  # type: ignore[no-untyped-def]
        self._take(sock)
        sock.setblocking(False)
        tls = sp_socket.wrap_socket(sock, config, do_handshake_on_connect=False, **options)
        drive_nonblocking(tls, tls.do_handshake, timeout)
        return NonBlockingEndpoint(tls)

    def client(
        self, sock, config, *, server_hostname="localhost", handshake_timeout=TIMEOUT, session=None
    ):  # type: ignore[no-untyped-def]
        return self._wrap(
            sock, config, handshake_timeout, server_hostname=server_hostname, session=session
        )

    def server(self, sock, config, *, initial_data=b"", handshake_timeout=TIMEOUT):  # type: ignore[no-untyped-def]
        return self._wrap(
            sock, config, handshake_timeout, server_side=True, initial_data=initial_data
        )


# ----------------------------------------------------------------------
# The async adapters, through a blocking portal


class PortalHarness(Harness):
    backend = "asyncio"
    backend_options: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._cm = anyio.from_thread.start_blocking_portal(self.backend, self.backend_options)
        self.portal = self._cm.__enter__()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = TIMEOUT) -> Any:
        async def bounded() -> Any:
            with anyio.fail_after(timeout):
                return await fn(*args)

        return self.portal.call(bounded)

    def _settle(self) -> None:
        async def settle() -> None:
            # A transport closes its socket when it is done; after a TLS
            # failure that is after a drain of up to ALERT_DRAIN_TIMEOUT.
            with anyio.move_on_after(2.0):
                while any(sock.fileno() != -1 for sock in self._given):
                    await anyio.sleep(0.01)

        self.portal.call(settle)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._cm.__exit__(None, None, None)


class StreamsPlain(Plain):
    def __init__(
        self, harness: PortalHarness, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.harness = harness
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        async def send() -> None:
            self.writer.write(data)
            await self.writer.drain()

        self.harness.call(send)

    def recv(self, n: int = 65536) -> bytes:
        return self.harness.call(self.reader.read, n)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.harness.portal.call(self.writer.close)


class StreamsEndpoint(Endpoint):
    def __init__(
        self, harness: PortalHarness, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.harness = harness
        self.reader = reader
        self.writer = writer
        self.tls = writer.transport

    def inspect(self, fn: Callable[[Any], Any]) -> Any:
        return self.harness.portal.call(fn, self.tls)

    def send(self, data: bytes) -> None:
        async def send() -> None:
            self.writer.write(data)
            await self.writer.drain()

        self.harness.call(send)

    def recv(self, n: int = 65536) -> bytes:
        return self.harness.call(self.reader.read, n)  # type: ignore[no-any-return]

    def send_eof(self) -> None:
        self.harness.portal.call(self.writer.write_eof)

    def close(self) -> None:
        async def close() -> None:
            self.writer.close()
            with anyio.move_on_after(3), contextlib.suppress(Exception):
                await self.writer.wait_closed()

        self.harness.call(close)

    def unwrap(self) -> tuple[Plain, bytes]:
        reader, writer = self.harness.call(sp_asyncio.unwrap_streams, self.reader, self.writer)
        return StreamsPlain(self.harness, reader, writer), b""

    def cancelled_send(self, data: bytes, after: float) -> str:
        async def send() -> str:
            self.writer.write(data)
            with anyio.move_on_after(after):
                await self.writer.drain()
            return "usable"

        return self.harness.call(send)  # type: ignore[no-any-return]


class AsyncioHarness(PortalHarness):
    name = "asyncio"

    def client(
        self, sock, config, *, server_hostname="localhost", handshake_timeout=TIMEOUT, session=None
    ):  # type: ignore[no-untyped-def]
        async def connect() -> StreamsEndpoint:
            reader, writer = await sp_asyncio.open_connection(
                sock=sock,
                config=config,
                server_hostname=server_hostname,
                session=session,
                ssl_handshake_timeout=handshake_timeout,
                ssl_shutdown_timeout=3.0,
            )
            return StreamsEndpoint(self, reader, writer)

        self._take(sock)
        sock.setblocking(False)
        return self.call(connect)  # type: ignore[no-any-return]

    def server(self, sock, config, *, initial_data=b"", handshake_timeout=TIMEOUT):  # type: ignore[no-untyped-def]
        async def accept() -> StreamsEndpoint:
            plain_reader, plain_writer = await asyncio.open_connection(sock=sock)
            if initial_data:
                # Bytes already in the reader's buffer when the upgrade
                # starts: they must go to TLS (cpython gh-142352).
                plain_reader.feed_data(initial_data)
            reader, writer = await sp_asyncio.upgrade_streams(
                plain_reader,
                plain_writer,
                config,
                server_side=True,
                ssl_handshake_timeout=handshake_timeout,
                ssl_shutdown_timeout=3.0,
            )
            return StreamsEndpoint(self, reader, writer)

        self._take(sock)
        sock.setblocking(False)
        return self.call(accept)  # type: ignore[no-any-return]

    def upgrade_server(self, sock, config):  # type: ignore[no-untyped-def]
        async def accept() -> tuple[bytes, StreamsEndpoint]:
            plain_reader, plain_writer = await asyncio.open_connection(sock=sock)
            line = await plain_reader.readline()
            reader, writer = await sp_asyncio.upgrade_streams(
                plain_reader, plain_writer, config, server_side=True, ssl_shutdown_timeout=3.0
            )
            return line, StreamsEndpoint(self, reader, writer)

        self._take(sock)
        sock.setblocking(False)
        return self.call(accept)  # type: ignore[no-any-return]

    def upgrade_server_protocol(self, sock: socket.socket, config: TLSConfig) -> tuple[bytes, Any]:
        """The transport-level upgrade (:func:`securepair.asyncio.start_tls`)
        from a plain ``Protocol`` that got the line and the ClientHello in
        one ``data_received``."""

        class LineProtocol(asyncio.Protocol):
            def __init__(self) -> None:
                self.buffer = b""
                self.got_line: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                self.tls_data = bytearray()

            def data_received(self, data: bytes) -> None:
                if self.got_line.done():
                    self.tls_data += data
                    return
                self.buffer += data
                if b"\n" in self.buffer:
                    line, _, rest = self.buffer.partition(b"\n")
                    self.buffer = rest
                    self.got_line.set_result(line + b"\n")

            def connection_lost(self, exc: Exception | None) -> None:
                pass

        async def accept() -> tuple[bytes, bytes]:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_accepted_socket(LineProtocol, sock)
            line = await protocol.got_line
            tls = await sp_asyncio.start_tls(
                transport,
                protocol,
                config,
                server_side=True,
                initial_data=protocol.buffer,
                ssl_shutdown_timeout=3.0,
            )
            # The protocol now gets cleartext through the TLS transport.
            while b"\n" not in protocol.tls_data:
                await asyncio.sleep(0.01)
            tls.write(b"echo " + bytes(protocol.tls_data))
            tls.close()
            return line, bytes(protocol.tls_data)

        self._take(sock)
        sock.setblocking(False)
        return self.call(accept)  # type: ignore[no-any-return]


class UvloopHarness(AsyncioHarness):
    name = "uvloop"
    backend_options: ClassVar[dict[str, Any]] = {"use_uvloop": True}


class AnyioPlain(Plain):
    def __init__(self, harness: PortalHarness, stream: anyio.abc.ByteStream) -> None:
        self.harness = harness
        self.stream = stream

    def send(self, data: bytes) -> None:
        self.harness.call(self.stream.send, data)

    def recv(self, n: int = 65536) -> bytes:
        async def receive() -> bytes:
            try:
                return await self.stream.receive(n)
            except anyio.EndOfStream:
                return b""

        return self.harness.call(receive)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.harness.call(self.stream.aclose)


class AnyioEndpoint(Endpoint):
    def __init__(self, harness: PortalHarness, tls: sp_anyio.TLSStream) -> None:
        self.harness = harness
        self.tls = tls

    def inspect(self, fn: Callable[[Any], Any]) -> Any:
        return self.harness.portal.call(fn, self.tls)

    def send(self, data: bytes) -> None:
        self.harness.call(self.tls.send, data)

    def recv(self, n: int = 65536) -> bytes:
        async def receive() -> bytes:
            try:
                return await self.tls.receive(n)
            except anyio.EndOfStream:
                return b""

        return self.harness.call(receive)  # type: ignore[no-any-return]

    def send_eof(self) -> None:
        self.harness.call(self.tls.send_eof)

    def close(self) -> None:
        self.harness.call(self.tls.aclose)

    def unwrap(self) -> tuple[Plain, bytes]:
        stream, trailing = self.harness.call(self.tls.unwrap)
        return AnyioPlain(self.harness, stream), trailing

    def cancelled_send(self, data: bytes, after: float) -> str:
        async def send() -> str:
            with anyio.move_on_after(after) as scope:
                await self.tls.send(data)
            if not scope.cancelled_caught:
                return "usable"
            try:
                await self.tls.send(b"?")
            except anyio.BrokenResourceError:
                return "broken"
            raise AssertionError("send() after a cancelled send() did not fail")

        return self.harness.call(send)  # type: ignore[no-any-return]


class AnyioHarness(PortalHarness):
    name = "anyio-asyncio"

    def _wrap(self, sock, config, timeout, **options):  # type: ignore[no-untyped-def]
        self._take(sock)

        async def wrap() -> AnyioEndpoint:
            stream = await anyio.abc.SocketStream.from_socket(sock)
            tls = await sp_anyio.TLSStream.wrap(
                stream, config, handshake_timeout=timeout, shutdown_timeout=3.0, **options
            )
            return AnyioEndpoint(self, tls)

        return self.call(wrap, timeout=timeout + TIMEOUT)  # type: ignore[no-any-return]

    def client(
        self, sock, config, *, server_hostname="localhost", handshake_timeout=TIMEOUT, session=None
    ):  # type: ignore[no-untyped-def]
        return self._wrap(
            sock, config, handshake_timeout, server_hostname=server_hostname, session=session
        )

    def server(self, sock, config, *, initial_data=b"", handshake_timeout=TIMEOUT):  # type: ignore[no-untyped-def]
        return self._wrap(
            sock, config, handshake_timeout, server_side=True, initial_data=initial_data
        )

    def upgrade_server(self, sock, config):  # type: ignore[no-untyped-def]
        self._take(sock)

        async def accept() -> tuple[bytes, AnyioEndpoint]:
            stream = await anyio.abc.SocketStream.from_socket(sock)
            data = b""
            while b"\n" not in data:
                data += await stream.receive()
            line, _, rest = data.partition(b"\n")
            tls = await sp_anyio.TLSStream.wrap(
                stream, config, server_side=True, initial_data=rest, shutdown_timeout=3.0
            )
            return line + b"\n", AnyioEndpoint(self, tls)

        return self.call(accept)  # type: ignore[no-any-return]


class AnyioTrioHarness(AnyioHarness):
    name = "anyio-trio"
    backend = "trio"


_HARNESS_CLASSES: dict[str, type[Harness]] = {
    "socket": SocketHarness,
    "socket-nb": NonBlockingHarness,
    "asyncio": AsyncioHarness,
    "uvloop": UvloopHarness,
    "anyio-asyncio": AnyioHarness,
    "anyio-trio": AnyioTrioHarness,
}


@contextlib.contextmanager
def make_harness(name: str) -> Iterator[Harness]:
    harness = _HARNESS_CLASSES[name]()
    try:
        yield harness
    finally:
        harness.close()


def connect(
    harness: Harness,
    client_config: TLSConfig,
    server_config: TLSConfig,
    *,
    buffer: int | None = None,
) -> tuple[Endpoint, Endpoint]:
    """A connected (client, server) pair of endpoints of ``harness``."""
    client_sock, server_sock = harness.socketpair(buffer)
    return both(
        lambda: harness.client(client_sock, client_config),
        lambda: harness.server(server_sock, server_config),
    )


def read_until_eof_or_error(sock: socket.socket, timeout: float = TIMEOUT) -> tuple[bytes, Any]:
    """Read a raw socket to its end: (bytes, b"" for EOF or the exception)."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError as exc:
        return bytes(data), exc
    return bytes(data), b""


def client_hello(config: TLSConfig, server_hostname: str = "localhost") -> bytes:
    """The ClientHello a client with ``config`` sends."""
    from securepair import SecurePair

    return SecurePair(config, server_side=False, server_hostname=server_hostname).encrypted.read()


__all__ = [
    "HARNESSES",
    "HOST",
    "TIMEOUT",
    "Certs",
    "Endpoint",
    "Harness",
    "Plain",
    "both",
    "client_hello",
    "connect",
    "make_harness",
    "read_until_eof_or_error",
    "socketpair_tcp",
]
