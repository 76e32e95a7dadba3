"""What the STARTTLS helper tests share: certificates on disk, free ports,
bounded waits, and a threaded reference server built on
:func:`securepair.starttls.socket.starttls_server_socket`.

The reference server plays one protocol: the plaintext phase is the
negotiator's (with an optional handler), and inside TLS a tiny application
answers every command line in the protocol's own syntax (``250 ECHO ...``,
``<tag> OK ECHO ...``, ``+OK ECHO ...``), after offering it to the
negotiator's ``answer_in_tls()``; binary protocols (LDAP, PostgreSQL) and
XMPP get their bytes echoed back behind ``ECHO``.  Each connection is
recorded as a :class:`Session`: what the application read inside TLS, the
TLS version, the error if any.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securepair import TLSConfig
from securepair.certgen import CertificateAuthority
from securepair.starttls import ServerNegotiator, XMPPServer
from securepair.starttls.socket import StartTLSSocket, starttls_server_socket

#: Seconds any single wait in these tests may take before it fails.
WAIT = 10.0


@dataclass(frozen=True)
class PKI:
    """A CA and a leaf for ``localhost`` and ``127.0.0.1``, as PEM and as
    files in a directory every server user can read."""

    dir: Path
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def cert_file(self) -> str:
        return str(self.dir / "cert.pem")

    @property
    def key_file(self) -> str:
        return str(self.dir / "key.pem")

    def server_config(self) -> TLSConfig:
        return TLSConfig(cert=self.cert_pem, key=self.key_pem)

    def client_config(self) -> TLSConfig:
        return TLSConfig(ca=self.ca_pem)

    def stdlib_client_context(self) -> ssl.SSLContext:
        """The stdlib's own TLS client, trusting the CA."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


def private_dir(prefix: str) -> Path:
    """A short temp dir in /tmp that server users can traverse (0755);
    pytest's tmp_path sits under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@contextmanager
def make_pki() -> Iterator[PKI]:
    ca = CertificateAuthority("securepair STARTTLS test CA")
    leaf = ca.issue(["localhost", "127.0.0.1"])
    path = private_dir("sp-pki-")
    try:
        (path / "ca.pem").write_bytes(ca.cert_pem)
        (path / "cert.pem").write_bytes(leaf.cert_pem)
        key = path / "key.pem"
        key.write_bytes(leaf.key_pem)
        key.chmod(0o600)
        yield PKI(path, ca.cert_pem, leaf.cert_pem, leaf.key_pem)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A port nobody listens on right now (bind to 0, read it, close)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` (every 20 ms) until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.02)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------
# The reference application inside TLS


#: The reply of the application to a command line, by protocol.
def app_reply(protocol: str, line: bytes) -> tuple[bytes, bool]:
    """(reply, close after it) for one command line inside TLS."""
    text = line.rstrip(b"\r\n")
    verb = text.split(b" ", 1)[0].upper()
    if protocol in ("smtp", "lmtp"):
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n", True
        return b"250 2.0.0 ECHO " + text + b"\r\n", False
    if protocol == "imap":
        tag, _, rest = text.partition(b" ")
        if rest.split(b" ", 1)[0].upper() == b"LOGOUT":
            return b"* BYE bye\r\n" + tag + b" OK LOGOUT completed\r\n", True
        return tag + b" OK ECHO " + rest + b"\r\n", False
    if protocol == "pop3":
        return (b"+OK bye\r\n", True) if verb == b"QUIT" else (b"+OK ECHO " + text + b"\r\n", False)
    if protocol == "ftp":
        return (b"221 Bye\r\n", True) if verb == b"QUIT" else (b"200 ECHO " + text + b"\r\n", False)
    if protocol == "nntp":
        if verb == b"QUIT":
            return b"205 Bye\r\n", True
        if verb == b"DATE":
            return b"111 20260101000000\r\n", False
        return b"200 ECHO " + text + b"\r\n", False
    if protocol == "sieve":
        if verb == b"LOGOUT":
            return b'OK "Bye"\r\n', True
        return b'OK "ECHO ' + text.replace(b'"', b"'") + b'"\r\n', False
    return b"ECHO " + line, False


LINE_PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "pop3", "ftp", "nntp", "sieve"})


def serve_app(tls: StartTLSSocket, protocol: str, seen: list[bytes]) -> None:
    """The application inside TLS, until the client quits or closes."""
    negotiator = tls.starttls.negotiator
    assert isinstance(negotiator, ServerNegotiator)
    if protocol in LINE_PROTOCOLS:
        reader = tls.makefile("rb")
        try:
            while True:
                line = reader.readline(8192)
                if not line:
                    return
                seen.append(line)
                answer = negotiator.answer_in_tls(line)
                if answer is not None:
                    tls.sendall(answer)
                    continue
                reply, done = app_reply(protocol, line)
                tls.sendall(reply)
                if done:
                    return
        finally:
            reader.close()
    # Binary protocols and XMPP: one chunk in, echoed back, then the
    # server closes (clients that wait for the server's close exit then).
    data = tls.recv(65536)
    if data:
        seen.append(data)
        answer = negotiator.answer_in_tls(data) if protocol == "ldap" else None
        tls.sendall(answer if answer is not None else b"ECHO " + data)


@dataclass
class Session:
    """One connection to the reference server."""

    protocol: str
    #: What the application read inside TLS (lines, or chunks).
    seen: list[bytes] = field(default_factory=list)
    #: Commands the plaintext handler was shown.
    plaintext_commands: list[str] = field(default_factory=list)
    version: str | None = None
    error: BaseException | None = None


class ReferenceServer:
    """A threaded STARTTLS server on 127.0.0.1 for one protocol."""

    def __init__(
        self,
        protocol: str,
        config: TLSConfig,
        *,
        negotiator: Callable[[], ServerNegotiator] | None = None,
        xmpp_domain: str = "localhost",
    ) -> None:
        self.protocol = protocol
        self.config = config
        self._negotiator = negotiator
        self._xmpp_domain = xmpp_domain
        self.sessions: queue.Queue[Session] = queue.Queue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _make_negotiator(self) -> ServerNegotiator | str:
        if self._negotiator is not None:
            return self._negotiator()
        if self.protocol == "xmpp":
            return XMPPServer(self._xmpp_domain)
        return self.protocol

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        session = Session(self.protocol)

        def handler(negotiator: ServerNegotiator, command: Any) -> None:
            session.plaintext_commands.append(command.command)

        try:
            tls = starttls_server_socket(
                conn, self._make_negotiator(), self.config, handler=handler, timeout=WAIT
            )
            with tls:
                session.version = tls.version()
                serve_app(tls, self.protocol, session.seen)
        except BaseException as exc:  # recorded for the test to look at
            session.error = exc
        finally:
            self.sessions.put(session)

    def next_session(self) -> Session:
        """The next finished connection (waits at most WAIT seconds)."""
        return self.sessions.get(timeout=WAIT)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._acceptor.join(WAIT)
        for thread in self._threads:
            thread.join(WAIT)

    def __enter__(self) -> ReferenceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
