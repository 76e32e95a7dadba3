"""Real TLS peers on 127.0.0.1 for the interop tests.

* :class:`PairDriver` pumps a :class:`~securepair.SecurePair` over a
  connected blocking socket, every wait bounded.  It is a test helper, not
  the socket adapter: it keeps every event and every decrypted byte so a test
  can assert on them afterwards.
* :class:`Certs` makes a CA, server and client certificates with trustme and
  writes them as PEM files for the external tools.
* :class:`ToolProcess` runs ``openssl`` or ``gnutls-*`` with its output
  collected by a thread (so a chatty tool never blocks on a full pipe) and is
  always killed on exit; the launchers below pick a port, start the tool and
  wait until it listens.
* :class:`PySSLServer` and :class:`PySSLClient` run one Python ``ssl``
  socket connection in a thread and hand back what they saw.

Everything listens on 127.0.0.1 only, except ``gnutls-serv``, which has no
option to choose its address and binds the wildcard address (it is reached
through 127.0.0.1 and lives for a fraction of a second).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trustme

from securepair.events import (
    CloseNotifyReceived,
    Event,
    HandshakeComplete,
    RaggedEOF,
    SessionTicket,
)

if TYPE_CHECKING:
    from pathlib import Path

    from securepair import SecurePair

#: Upper bound for any single wait in these helpers, in seconds.
TIMEOUT = 5.0

HOST = "127.0.0.1"

#: A host name the server certificate covers besides localhost, sent as SNI
#: so that a server that reports "localhost" by default would be caught.
SNI_NAME = "interop.securepair.test"


# ----------------------------------------------------------------------------
# Driving a pair over a socket


class PeerClosed(Exception):
    """The transport ended while the driver waited for something else."""


class PairDriver:
    """Pump a :class:`SecurePair` over a connected blocking socket.

    Every call sends what the pair has to send, then reads from the socket
    and feeds the pair until its condition holds or ``timeout`` seconds
    pass.  Events are appended to :attr:`events`, decrypted bytes to
    :attr:`received`.  When the pair raises, its pending bytes (the alert)
    are sent first, as the design's "alerts go out before errors come up"
    requires, and the error propagates.
    """

    def __init__(self, pair: SecurePair, sock: socket.socket, *, timeout: float = TIMEOUT):
        self.pair = pair
        self.sock = sock
        self.timeout = timeout
        self.events: list[Event] = []
        self.received = bytearray()
        #: True once the socket reported EOF.
        self.eof = False
        #: Bytes sent to and received from the network, for diagnostics.
        self.bytes_sent = 0
        self.bytes_read = 0

    # -- plumbing ---------------------------------------------------------

    def flush(self) -> None:
        """Send everything the pair has for the network."""
        data = self.pair.encrypted.read()
        if data:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
            self.bytes_sent += len(data)

    def _collect(self) -> None:
        self.events.extend(self.pair.events())
        self.received += self.pair.cleartext.read()

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                taken = self.pair.encrypted.write(view)
                view = view[taken:]
                self._collect()
        finally:
            self._collect()
            # The alert (or the handshake reply) goes out before the error
            # comes up; a peer that already hung up cannot stop the error.
            with contextlib.suppress(OSError):
                self.flush()

    def _pump_once(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(self._describe(f"timed out waiting for {what}"))
        if self.eof:
            raise PeerClosed(self._describe(f"transport ended while waiting for {what}"))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(self._describe(f"timed out waiting for {what}")) from None
        except ConnectionResetError:
            data = b""
        if data:
            self.bytes_read += len(data)
            self._feed(data)
            return
        self.eof = True
        try:
            self.pair.encrypted.write_eof()
        finally:
            self._collect()
            with contextlib.suppress(OSError):
                self.flush()

    def _describe(self, message: str) -> str:
        return (
            f"{message}; state={self.pair.state.value}, events={self.events!r}, "
            f"received={bytes(self.received)[:200]!r}, sent={self.bytes_sent}, "
            f"read={self.bytes_read}"
        )

    def run_until(
        self, condition: Callable[[], bool], what: str, *, timeout: float | None = None
    ) -> None:
        """Pump until ``condition()`` holds; bounded by ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self.flush()
        self._collect()
        while not condition():
            self._pump_once(deadline, what)
            self.flush()

    # -- what tests call --------------------------------------------------

    def first(self, kind: type[Any]) -> Any:
        """The first collected event of type ``kind``, or ``None``."""
        return next((e for e in self.events if isinstance(e, kind)), None)

    def handshake(self) -> HandshakeComplete:
        """Complete the handshake; returns the HandshakeComplete event."""
        self.run_until(lambda: self.pair.handshake_complete, "the handshake")
        event = self.first(HandshakeComplete)
        assert event is not None
        return event  # type: ignore[no-any-return]

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` and send it."""
        view = memoryview(data)
        while view:
            taken = self.pair.cleartext.write(view)
            view = view[taken:]
            self.flush()

    def recv_until(self, marker: bytes, *, timeout: float | None = None) -> bytes:
        """Pump until the received cleartext contains ``marker``; returns all
        of it received so far."""
        self.run_until(lambda: marker in self.received, f"{marker!r}", timeout=timeout)
        return bytes(self.received)

    def recv_exactly(self, n: int, *, timeout: float | None = None) -> bytes:
        """Pump until ``n`` cleartext bytes have arrived in total."""
        self.run_until(lambda: len(self.received) >= n, f"{n} bytes", timeout=timeout)
        return bytes(self.received)

    def session_ticket(self, *, timeout: float = 2.0) -> Any:
        """Pump until a SessionTicket event arrives; returns its session."""
        self.run_until(
            lambda: self.first(SessionTicket) is not None, "a session ticket", timeout=timeout
        )
        return self.first(SessionTicket).session

    def close(self) -> None:
        """Send close_notify (it does not wait for the peer's)."""
        self.pair.close()
        self.flush()

    def wait_peer_close(self, *, timeout: float | None = None) -> Event:
        """Pump until the peer's close_notify or a (tolerated) ragged EOF;
        returns that event.  A ragged EOF with the default strict config
        raises RaggedEOFError from the pair instead."""

        def closed() -> bool:
            return any(isinstance(e, CloseNotifyReceived | RaggedEOF) for e in self.events)

        self.run_until(closed, "the peer's close", timeout=timeout)
        return next(e for e in self.events if isinstance(e, CloseNotifyReceived | RaggedEOF))

    def wait_eof(self, *, timeout: float | None = None) -> None:
        """Pump until the transport ends (after a clean close, say)."""
        self.run_until(lambda: self.eof, "EOF", timeout=timeout)


def connect(port: int, *, timeout: float = TIMEOUT) -> socket.socket:
    """A TCP connection to 127.0.0.1:port."""
    return socket.create_connection((HOST, port), timeout=timeout)


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 and a free port, closed on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        sock.listen(4)
        sock.settimeout(TIMEOUT)
        yield sock
    finally:
        sock.close()


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for tools that cannot
    report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------
# Certificates


@dataclass
class Certs:
    """A CA with an intermediate, a server and a client certificate, as
    trustme objects and as PEM files in ``directory``."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.intermediate = self.ca.create_child_ca()
        self.server = self.intermediate.issue_cert("localhost", "127.0.0.1", SNI_NAME)
        self.client = self.ca.issue_cert("client.example", common_name="client.example")
        self.ca_pem = self.ca.cert_pem.bytes()
        # Leaf first, then the intermediate: the chain our servers send.
        self.server_chain_pem = b"".join(p.bytes() for p in self.server.cert_chain_pems)
        self.server_key_pem = self.server.private_key_pem.bytes()
        self.client_chain_pem = b"".join(p.bytes() for p in self.client.cert_chain_pems)
        self.client_key_pem = self.client.private_key_pem.bytes()
        self.ca_file = self._write("ca.pem", self.ca_pem)
        self.server_chain_file = self._write("server-chain.pem", self.server_chain_pem)
        self.server_key_file = self._write("server-key.pem", self.server_key_pem)
        # openssl s_server's -cert takes the leaf only; the rest is -cert_chain.
        self.server_leaf_file = self._write(
            "server-leaf.pem", self.server.cert_chain_pems[0].bytes()
        )
        self.server_intermediates_file = self._write(
            "server-intermediates.pem", b"".join(p.bytes() for p in self.server.cert_chain_pems[1:])
        )
        self.client_chain_file = self._write("client-chain.pem", self.client_chain_pem)
        self.client_key_file = self._write("client-key.pem", self.client_key_pem)

    def _write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)

    def stranger(self) -> tuple[str, str]:
        """(chain file, key file) of a localhost certificate from a CA that
        nobody here trusts."""
        leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
        chain = self._write("stranger-chain.pem", b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key = self._write("stranger-key.pem", leaf.private_key_pem.bytes())
        return chain, key


# ----------------------------------------------------------------------------
# External programs


class ToolProcess:
    """A running external program; stdout and stderr are merged and
    collected by a thread.  Use as a context manager: on exit the process is
    terminated (then killed) and its pipes closed, whatever happened."""

    def __init__(self, argv: Sequence[str], *, cwd: str | None = None) -> None:
        self.argv = list(argv)
        self._output = bytearray()
        self._cond = threading.Condition()
        self._done = False
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, name=f"read {argv[0]}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                with self._cond:
                    self._output += chunk
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __enter__(self) -> ToolProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def output(self) -> str:
        """Everything the program printed so far."""
        with self._cond:
            return self._output.decode("utf-8", "replace")

    def _describe(self, message: str) -> str:
        return f"{message}\ncommand: {' '.join(self.argv)}\noutput:\n{self.output}"

    def wait_for(
        self, pattern: str | re.Pattern[str], *, timeout: float = TIMEOUT
    ) -> re.Match[str]:
        """Wait until the output matches ``pattern`` (a regular expression)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = regex.search(self._output.decode("utf-8", "replace"))
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    break
                self._cond.wait(remaining)
        why = "exited" if self._done else "timed out"
        raise AssertionError(self._describe(f"{why} before printing {regex.pattern!r}"))

    def write(self, data: bytes) -> None:
        """Write to the program's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """EOF on the program's stdin."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, *, timeout: float = TIMEOUT) -> int:
        """Wait for the program to exit; returns its exit status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(self._describe(f"still running after {timeout} s")) from None
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        """Terminate (then kill) the program, close its pipes."""
        proc = self.proc
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(2)
        finally:
            self.close_stdin()
            self._reader.join(2)
            if proc.stdout is not None:
                proc.stdout.close()


def _version_flag_openssl(version: str) -> str:
    return {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[version]


def gnutls_priority(version: str) -> str:
    """A GnuTLS priority string allowing only ``version``."""
    name = {"TLSv1.2": "VERS-TLS1.2", "TLSv1.3": "VERS-TLS1.3"}[version]
    return f"NORMAL:-VERS-ALL:+{name}"


@contextlib.contextmanager
def openssl_s_server(
    openssl: str,
    *,
    cert: str,
    key: str,
    version: str,
    mode: Sequence[str] = ("-rev",),
    extra: Sequence[str] = (),
) -> Iterator[tuple[ToolProcess, int]]:
    """``openssl s_server`` on 127.0.0.1 and a port it chose; yields
    (process, port) once it accepts connections."""
    argv = [
        openssl,
        "s_server",
        "-accept",
        f"{HOST}:0",
        "-cert",
        cert,
        "-key",
        key,
        _version_flag_openssl(version),
        *mode,
        *extra,
    ]
    with ToolProcess(argv) as proc:
        found = proc.wait_for(r"ACCEPT [^\s]*:(\d+)")
        yield proc, int(found.group(1))


@contextlib.contextmanager
def openssl_s_client(
    openssl: str, *, port: int, version: str, extra: Sequence[str] = ()
) -> Iterator[ToolProcess]:
    """``openssl s_client`` connected to 127.0.0.1:port."""
    argv = [openssl, "s_client", "-connect", f"{HOST}:{port}", _version_flag_openssl(version)]
    with ToolProcess([*argv, *extra]) as proc:
        yield proc


@contextlib.contextmanager
def gnutls_serv(
    tool: str, *, cert: str, key: str, version: str, extra: Sequence[str] = ()
) -> Iterator[tuple[ToolProcess, Callable[[], socket.socket]]]:
    """``gnutls-serv --echo`` in a network namespace of its own; yields
    (process, connect) once it listens, where ``connect()`` opens a TCP
    connection to it.

    gnutls-serv has no option to choose its listening address and binds
    every interface; the test servers here listen on loopback only.  So it
    runs under ``unshare --net``, in a namespace whose only interface is its
    own loopback, and ``connect()`` makes the socket from a thread that has
    joined that namespace (a socket stays usable from any thread)."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    if unshare is None or ip is None:
        raise AssertionError("gnutls-serv needs unshare (util-linux) and ip (iproute2)")
    # gnutls-serv block-buffers stdout into a pipe; stdbuf makes it
    # line-buffered so "listening...done" shows up when it is true.
    stdbuf = shutil.which("stdbuf")
    prefix = [stdbuf, "-oL"] if stdbuf else []
    # A fresh namespace: every port is free.
    port = 4433
    server = [
        *prefix,
        tool,
        "--echo",
        "--port",
        str(port),
        "--x509certfile",
        cert,
        "--x509keyfile",
        key,
        "--priority",
        gnutls_priority(version),
        *extra,
    ]
    argv = [unshare, "--net", "--", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh", *server]
    with ToolProcess(argv) as proc:
        pid = proc.proc.pid

        def connect_inside() -> socket.socket:
            return in_network_namespace(
                pid, lambda: socket.create_connection((HOST, port), timeout=TIMEOUT)
            )

        if stdbuf:
            proc.wait_for(rf"listening on IPv4 .* port {port}\.\.\.done")
        else:
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    connect_inside().close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield proc, connect_inside


_CLONE_NEWNET = 0x40000000


def in_network_namespace(pid: int, action: Callable[[], Any]) -> Any:
    """Run ``action`` in a thread that joined process ``pid``'s network
    namespace (setns(2) changes only the calling thread's)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns: {os.strerror(errno)}")
            finally:
                os.close(fd)
            result["value"] = action()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise AssertionError("joining the network namespace timed out")
    return result["value"]


def _wait_connectable(port: int, proc: ToolProcess) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(proc._describe("exited before listening"))
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise AssertionError(proc._describe("never listened"))


@contextlib.contextmanager
def gnutls_cli(
    tool: str, *, port: int, version: str, extra: Sequence[str] = ()
) -> Iterator[ToolProcess]:
    """``gnutls-cli`` connected to 127.0.0.1:port."""
    argv = [tool, "--port", str(port), "--priority", gnutls_priority(version), *extra, HOST]
    with ToolProcess(argv) as proc:
        yield proc


# ----------------------------------------------------------------------------
# Python ssl sockets in a thread


class _PeerThread:
    """Runs ``target`` in a thread; :meth:`join` re-raises what it raised."""

    def __init__(self, name: str) -> None:
        self.error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._sockets: list[socket.socket] = []

    def _run(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Wait for the thread; re-raise its exception; return its info."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Unblock it: closing its sockets makes its blocking calls fail.
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._thread.join(timeout)
            raise AssertionError(f"{self._thread.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.info

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in self._sockets:
            if exc_info[0] is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(TIMEOUT)
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


#: What a Python ssl peer does with its connection once the handshake is
#: done: ``handler(sslsock, info)``.
Handler = Callable[[ssl.SSLSocket, dict[str, Any]], None]


def describe_ssl_socket(sock: ssl.SSLSocket, info: dict[str, Any]) -> None:
    """Record what a Python ssl socket negotiated into ``info``."""
    info["version"] = sock.version()
    info["cipher"] = sock.cipher()
    info["alpn"] = sock.selected_alpn_protocol()
    info["peercert"] = sock.getpeercert()
    info["session_reused"] = sock.session_reused


def read_until(sock: ssl.SSLSocket, marker: bytes) -> bytes:
    """Read from a Python ssl socket until ``marker`` has arrived; return
    everything read.  EOF first is an AssertionError."""
    data = bytearray()
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}; got {bytes(data)[:100]!r}")
        data += chunk
    return bytes(data)


class PySSLServer(_PeerThread):
    """One Python ``ssl`` server connection on 127.0.0.1, in a thread.

    ``context`` should have ``sni_callback`` unset: the server records the
    SNI name it was asked for in ``info["server_name"]``.  The socket raises
    on a ragged EOF (``suppress_ragged_eofs=False``), so a clean ``recv() ==
    b""`` means the peer's close_notify arrived.
    """

    def __init__(self, context: ssl.SSLContext, handler: Handler) -> None:
        super().__init__("python ssl server")
        self.context = context
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.append(self.listener)
        self.listener.bind((HOST, 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = int(self.listener.getsockname()[1])

        def sni(sslobj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
            self.info["server_name"] = name

        context.sni_callback = sni

    def run(self) -> None:
        raw, _ = self.listener.accept()
        self._sockets.append(raw)
        raw.settimeout(TIMEOUT)
        sock = self.context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        self._sockets.append(sock)
        describe_ssl_socket(sock, self.info)
        self.handler(sock, self.info)


class PySSLClient(_PeerThread):
    """One Python ``ssl`` client connection to 127.0.0.1:port, in a thread."""

    def __init__(
        self,
        context: ssl.SSLContext,
        port: int,
        handler: Handler,
        *,
        server_hostname: str = "localhost",
    ) -> None:
        super().__init__("python ssl client")
        self.context = context
        self.port = port
        self.handler = handler
        self.server_hostname = server_hostname

    def run(self) -> None:
        raw = socket.create_connection((HOST, self.port), timeout=TIMEOUT)
        self._sockets.append(raw)
        sock = self.context.wrap_socket(
            raw, server_hostname=self.server_hostname, suppress_ragged_eofs=False
        )
        self._sockets.append(sock)
        describe_ssl_socket(sock, self.info)
        self.handler(sock, self.info)


@contextlib.contextmanager
def accepted(sock: socket.socket) -> Iterator[socket.socket]:
    """Accept one connection on a listening socket (bounded), close on exit."""
    conn, _ = sock.accept()
    try:
        conn.settimeout(TIMEOUT)
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def plaintext_server(greeting: bytes) -> Iterator[int]:
    """A raw TCP server on 127.0.0.1 that sends ``greeting`` to one client
    and then waits for it to hang up; yields its port."""
    with listener() as sock:

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    conn.sendall(greeting)
                    with contextlib.suppress(OSError):
                        while conn.recv(4096):
                            pass

        thread = threading.Thread(target=serve, name="plaintext server", daemon=True)
        thread.start()
        try:
            yield int(sock.getsockname()[1])
        finally:
            thread.join(TIMEOUT)
