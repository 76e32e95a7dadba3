"""``securepair connect``, run as a user runs it (a subprocess) against real
servers on 127.0.0.1: a Python ``ssl`` server in a thread, ``openssl
s_server``, our own STARTTLS servers, and plain TCP servers that do not
speak TLS at all.

Every certificate is made here, at test time.  Every server is local, and
every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from securepair import TLSConfig, certgen
from securepair.cli import CommandError
from securepair.cli.connect import _CRLF, explain, parse_target

from ._tools import require_tool
from .peers import openssl_s_server
from .starttls_peers import ReferenceServer

ROOT = Path(__file__).resolve().parent.parent

#: Upper bound of any single wait in these tests, in seconds.
WAIT = 10.0

HOST = "127.0.0.1"

CONNECT = (sys.executable, "-m", "securepair", "connect")


# ----------------------------------------------------------------------
# Running the command


def connect(
    *args: str, stdin: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """``python -m securepair connect ARGS`` with ``stdin``; bytes out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*CONNECT, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def err(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stderr.decode("utf-8", "replace")


def one_error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """The single line a failure prints; nothing on stdout, no traceback."""
    text = err(done)
    assert done.stdout == b"", done.stdout
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("securepair connect: "), text
    return lines[0]


# ----------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Files:
    """PEM files made for this module: a self-signed server (as ``gencert``
    makes), a CA with its server and client, and CAs nobody uses."""

    self_cert: str
    self_key: str
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    self_fingerprint: str
    dir: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    path = tmp_path_factory.mktemp("connect-certs")

    def write(name: str, data: bytes) -> str:
        target = path / name
        target.write_bytes(data)
        return str(target)

    own = certgen.self_signed(["localhost", "127.0.0.1", "::1"], key_type="ecdsa")
    ca = certgen.CertificateAuthority("connect test CA")
    server = ca.issue(["localhost", "127.0.0.1"])
    client = ca.issue([], common_name="connect-client", client=True)
    other = certgen.CertificateAuthority("a CA nobody uses")
    fingerprint = x509.load_pem_x509_certificate(own.cert_pem).fingerprint(hashes.SHA256())
    return Files(
        self_cert=write("self.cert", own.cert_pem),
        self_key=write("self.pem", own.key_pem),
        ca_cert=write("ca.cert", ca.cert_pem),
        server_cert=write("server.cert", server.cert_pem),
        server_key=write("server.pem", server.key_pem),
        client_cert=write("client.cert", client.cert_pem),
        client_key=write("client.pem", client.key_pem),
        other_ca=write("other.cert", other.cert_pem),
        self_fingerprint=":".join(f"{b:02X}" for b in fingerprint),
        dir=path,
    )


# ----------------------------------------------------------------------
# Servers


@dataclass
class Session:
    """One connection to a :class:`PyServer`."""

    received: bytearray = field(default_factory=bytearray)
    server_name: str | None = None
    version: str | None = None
    #: True once the client's close_notify arrived.
    clean_close: bool = False
    error: BaseException | None = None


class PyServer:
    """A Python ``ssl`` server in threads: sends ``greeting``, then echoes
    every byte back; a ``QUIT`` line, or the client's close_notify, makes it
    close cleanly (close_notify).  With ``ragged`` it sends those bytes and
    drops the connection without close_notify instead."""

    def __init__(
        self,
        cert: str,
        key: str,
        *,
        host: str = HOST,
        max_version: ssl.TLSVersion | None = None,
        ragged: bytes = b"",
        greeting: bytes = b"",
    ) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        if max_version is not None:
            self.context.maximum_version = max_version
        self.context.sni_callback = self._sni
        self.ragged = ragged
        self.greeting = greeting
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.sessions: queue.Queue[Session] = queue.Queue()
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _sni(self, sslobj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
        # Called during the handshake, in the thread serving the connection.
        self._local.name = name

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        session = Session()
        conn.settimeout(WAIT)
        self._local.name = None
        try:
            tls = self.context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
            session.version = tls.version()
            session.server_name = self._local.name
            if self.ragged:
                tls.sendall(self.ragged)
                raw = socket.socket(fileno=tls.detach())
                raw.shutdown(socket.SHUT_RDWR)
                raw.close()
                return
            if self.greeting:
                tls.sendall(self.greeting)
            while True:
                data = tls.recv(65536)
                if not data:
                    session.clean_close = True
                    break
                session.received += data
                tls.sendall(data)
                if session.received.endswith(b"QUIT\n"):
                    break
            tls.unwrap().close()
        except (OSError, ValueError) as exc:  # recorded for the test to look at
            session.error = exc
        finally:
            conn.close()
            self.sessions.put(session)

    def next_session(self) -> Session:
        return self.sessions.get(timeout=WAIT)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(WAIT)

    def __enter__(self) -> PyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainServer:
    """A plain TCP server that sends ``greeting``, then answers each chunk
    it receives with the next of ``replies``, then closes.  No replies and
    ``hold=True``: it says nothing and keeps the connection open."""

    def __init__(self, greeting: bytes = b"", replies: tuple[bytes, ...] = (), hold: bool = False):
        self.greeting = greeting
        self.replies = replies
        self.hold = hold
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(WAIT)
        self.port = int(self.listener.getsockname()[1])
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(WAIT)
                if self.greeting:
                    conn.sendall(self.greeting)
                for reply in self.replies:
                    if not conn.recv(65536):
                        return
                    conn.sendall(reply)
                if self.hold:
                    self._done.wait(WAIT)

    def __enter__(self) -> PlainServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.listener.close()
        self._thread.join(WAIT)


@pytest.fixture(scope="module")
def openssl() -> str:
    return require_tool("openssl")


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# ----------------------------------------------------------------------
# Verification: authorized or not, and why


def test_pinned_self_signed_server_is_authorized_and_relayed(files: Files) -> None:
    data = bytes(range(256)) * 64 + b"\nQUIT\n"
    with PyServer(files.self_cert, files.self_key) as server:
        done = connect(f"localhost:{server.port}", "--ca", files.self_cert, stdin=data)
        session = server.next_session()
    text = err(done)
    assert done.returncode == 0, text
    # Binary-safe both ways, and stdout carries the server's bytes only.
    assert done.stdout == data
    assert bytes(session.received) == data
    assert session.server_name == "localhost"
    assert "authorized: true" in text
    assert "authorization_error" not in text
    assert "protocol: TLSv1.3" in text
    assert "sni: localhost" in text
    assert "subject: CN=localhost" in text
    assert "subjectaltname: DNS:localhost, IP Address:127.0.0.1, IP Address:::1" in text
    assert f"fingerprint256: {files.self_fingerprint}" in text
    assert re.search(r"serialNumber: [0-9A-F]+", text)
    assert re.search(r"valid_from: \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT", text)
    assert "session resumed: no" in text


@pytest.mark.parametrize(
    ("signed_by_ca", "code", "words"),
    [
        (False, "DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed and not trusted"),
        # A leaf-only chain from an untrusted CA: OpenSSL names it one of two
        # ways depending on the chain it could build.
        (
            True,
            "(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
            "trusted CA",
        ),
    ],
)
def test_another_ca_is_not_authorized_and_says_why(
    files: Files, signed_by_ca: bool, code: str, words: str
) -> None:
    cert, key = (
        (files.server_cert, files.server_key)
        if signed_by_ca
        else (
            files.self_cert,
            files.self_key,
        )
    )
    with PyServer(cert, key) as server:
        done = connect(f"localhost:{server.port}", "--ca", files.other_ca, stdin=b"still relayed\n")
        session = server.next_session()
    text = err(done)
    # Like s_client: the connection goes on, the verdict is reported.
    assert done.returncode == 3, text
    assert done.stdout == b"still relayed\n"
    assert session.clean_close
    assert "authorized: false" in text
    assert re.search(rf"authorization_error: {code} \(.*{words}", text), text


def test_host_name_mismatch_is_reported_with_the_names(files: Files) -> None:
    with PyServer(files.self_cert, files.self_key) as server:
        done = connect(
            f"127.0.0.1:{server.port}", "--ca", files.self_cert, "--servername", "wrong.test.", "-q"
        )
        session = server.next_session()
    assert done.returncode == 3, err(done)
    assert session.server_name == "wrong.test"
    line = one_error_line(done)
    assert "not authorized: ERR_TLS_CERT_ALTNAME_INVALID" in line
    assert "not for wrong.test" in line
    assert "DNS:localhost" in line


def test_an_ip_address_is_verified_as_one_and_not_sent_as_sni(files: Files) -> None:
    only_name = certgen.self_signed(["localhost"], key_type="ecdsa")
    cert = files.dir / "name-only.cert"
    key = files.dir / "name-only.pem"
    cert.write_bytes(only_name.cert_pem)
    key.write_bytes(only_name.key_pem)
    with PyServer(files.self_cert, files.self_key) as good:
        ok = connect(f"127.0.0.1:{good.port}", "--ca", files.self_cert, "--json")
        assert good.next_session().server_name is None
    with PyServer(str(cert), str(key)) as bad:
        wrong = connect(f"127.0.0.1:{bad.port}", "--ca", str(cert), "--json")
    assert ok.returncode == 0, err(ok)
    info = json.loads(ok.stdout)
    assert (info["servername"], info["sni"], info["authorized"]) == ("127.0.0.1", None, True)
    assert wrong.returncode == 3, err(wrong)
    info = json.loads(wrong.stdout)
    assert info["authorization_error"] == "ERR_TLS_CERT_ALTNAME_INVALID"
    assert "not for 127.0.0.1" in info["authorization_reason"]


def test_insecure_skips_verification_and_says_so(files: Files) -> None:
    with PyServer(files.self_cert, files.self_key) as server:
        done = connect(f"localhost:{server.port}", "--insecure", stdin=b"x\n")
    text = err(done)
    assert done.returncode == 0, text
    assert done.stdout == b"x\n"
    assert "authorized: false" in text
    assert "authorization_error: VERIFICATION_DISABLED (verification was turned off" in text
    helped = subprocess.run(
        [*CONNECT, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert "UNSAFE" in helped.stdout
    assert "Exit status:" in helped.stdout


def test_stdlib_backend_stops_at_a_failed_verification(files: Files) -> None:
    with PyServer(files.self_cert, files.self_key) as server:
        good = connect(
            f"localhost:{server.port}", "--ca", files.self_cert, "--backend", "stdlib", "--json"
        )
        bad = connect(
            f"localhost:{server.port}", "--ca", files.other_ca, "--backend", "stdlib", "--json"
        )
    assert good.returncode == 0, err(good)
    info = json.loads(good.stdout)
    assert (info["backend"], info["authorized"]) == ("stdlib", True)
    assert bad.returncode == 3, err(bad)
    assert json.loads(bad.stdout)["authorization_error"] == "DEPTH_ZERO_SELF_SIGNED_CERT"
    assert "the stdlib backend stops at a failed verification" in err(bad)


# ----------------------------------------------------------------------
# --json, ALPN, versions, client certificates


@pytest.mark.peer("openssl")
def test_json_describes_the_connection_and_does_not_relay(openssl: str, files: Files) -> None:
    with openssl_s_server(
        openssl,
        cert=files.server_cert,
        key=files.server_key,
        version="TLSv1.3",
        extra=["-alpn", "h2,http/1.1"],
    ) as (proc, port):
        done = connect(
            f"localhost:{port}",
            "--ca",
            files.ca_cert,
            "--alpn",
            "h2,http/1.1",
            "--alpn",
            "spdy/1",
            "--json",
            stdin=b"never sent\n",
        )
    assert done.returncode == 0, err(done)
    assert err(done) == ""
    info = json.loads(done.stdout)
    assert info["host"] == "localhost"
    assert info["port"] == port
    assert info["address"] == HOST
    assert info["servername"] == info["sni"] == "localhost"
    assert info["version"] == "TLSv1.3"
    assert info["cipher"]["name"].startswith("TLS_") and info["cipher"]["bits"] >= 128
    assert info["alpn"] == "h2"
    assert info["alpn_offered"] == ["h2", "http/1.1", "spdy/1"]
    assert (info["authorized"], info["authorization_error"]) == (True, None)
    assert info["session_reused"] is False
    assert info["starttls"] is None
    leaf = info["peer_certificate"]
    assert leaf["subject"] == {"CN": "localhost"}
    assert leaf["issuer"] == {"CN": "connect test CA"}
    assert leaf["subjectaltname"] == "DNS:localhost, IP Address:127.0.0.1"
    bytes.fromhex(leaf["raw"])  # bytes become hex
    assert [c["subject"]["CN"] for c in info["chain"]] == ["localhost", "connect test CA"]
    assert "never sent" not in proc.output


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_versions_and_a_clean_close_by_the_server(files: Files, version: str) -> None:
    with PyServer(files.self_cert, files.self_key) as server:
        done = connect(
            f"localhost:{server.port}",
            "--ca",
            files.self_cert,
            "--max-version",
            version,
            stdin=b"one\nQUIT\n",
        )
        session = server.next_session()
    assert done.returncode == 0, err(done)
    assert f"protocol: {version}" in err(done)
    assert session.version == version
    assert done.stdout == b"one\nQUIT\n"


def test_quiet_prints_only_the_servers_bytes_and_stdin_may_be_a_file(
    files: Files, tmp_path: Path
) -> None:
    request = tmp_path / "request.txt"
    request.write_bytes(b"GET / HTTP/1.0\r\n\r\nQUIT\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with PyServer(files.self_cert, files.self_key, greeting=b"* banner\r\n") as server:
        with request.open("rb") as stdin:
            done = subprocess.run(
                [*CONNECT, f"localhost:{server.port}", "--ca", files.self_cert, "--quiet"],
                stdin=stdin,
                capture_output=True,
                timeout=30,
                env=env,
                check=False,
            )
        assert bytes(server.next_session().received) == request.read_bytes()
    assert done.returncode == 0, err(done)
    assert err(done) == ""
    assert done.stdout == b"* banner\r\n" + request.read_bytes()


def test_end_of_input_half_closes_on_tls13_and_waits_on_tls12(files: Files) -> None:
    # TLS 1.3: close_notify goes out at the end of input; the server
    # answers, closes, and connect exits at once.
    with PyServer(files.self_cert, files.self_key) as server:
        started = time.monotonic()
        done = connect(f"localhost:{server.port}", "--ca", files.self_cert, stdin=b"ping\n")
        took = time.monotonic() - started
        session = server.next_session()
    assert done.returncode == 0, err(done)
    assert done.stdout == b"ping\n"
    assert session.clean_close
    assert took < 5
    # TLS 1.2: no half-close; the server keeps the connection open, so
    # connect waits --timeout seconds of silence, then closes cleanly.
    with PyServer(files.self_cert, files.self_key) as server:
        done = connect(
            f"localhost:{server.port}",
            "--ca",
            files.self_cert,
            "--max-version",
            "TLSv1.2",
            "--timeout",
            "1",
            stdin=b"ping\n",
        )
        session = server.next_session()
    assert done.returncode == 0, err(done)
    assert done.stdout == b"ping\n"
    assert "the server sent nothing for 1 s after the end of input; closing" in err(done)
    assert session.clean_close


@pytest.mark.peer("openssl")
def test_min_version_refused_by_a_tls12_server(openssl: str, files: Files) -> None:
    with openssl_s_server(
        openssl, cert=files.server_cert, key=files.server_key, version="TLSv1.2"
    ) as (_, port):
        done = connect(f"localhost:{port}", "--ca", files.ca_cert, "--min-version", "TLSv1.3")
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"TLS handshake with localhost:{port} failed" in line
    assert "protocol_version" in line


@pytest.mark.peer("openssl")
@pytest.mark.parametrize(
    ("version", "alert"), [("TLSv1.2", "handshake_failure"), ("TLSv1.3", "certificate_required")]
)
def test_client_certificate(openssl: str, files: Files, version: str, alert: str) -> None:
    with openssl_s_server(
        openssl,
        cert=files.server_cert,
        key=files.server_key,
        version=version,
        extra=["-Verify", "1", "-CAfile", files.ca_cert],
    ) as (proc, port):
        done = connect(
            f"localhost:{port}",
            "--ca",
            files.ca_cert,
            "--cert",
            files.client_cert,
            "--key",
            files.client_key,
            stdin=b"hello\nCLOSE\n",
        )
        assert done.returncode == 0, err(done)
        # -rev answers each line reversed.
        assert done.stdout.startswith(b"olleh\n")
        assert f"protocol: {version}" in err(done)
        proc.wait_for("CN ?= ?connect-client")
        refused = connect(f"localhost:{port}", "--ca", files.ca_cert)
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert f"the server sent a fatal {alert} alert" in line
    assert "--cert" in line


# ----------------------------------------------------------------------
# STARTTLS


@pytest.mark.parametrize(
    ("protocol", "lines", "expected"),
    [
        ("smtp", b"NOOP\nQUIT\n", b"250 2.0.0 ECHO NOOP\r\n221 2.0.0 Bye\r\n"),
        (
            "imap",
            b"t1 NOOP\nt9 LOGOUT\n",
            b"t1 OK ECHO NOOP\r\n* BYE bye\r\nt9 OK LOGOUT completed\r\n",
        ),
    ],
)
def test_starttls_relays_with_crlf(
    files: Files, protocol: str, lines: bytes, expected: bytes
) -> None:
    config = TLSConfig(cert=files.server_cert, key=files.server_key)
    with ReferenceServer(protocol, config) as server:
        done = connect(
            f"localhost:{server.port}",
            "--starttls",
            protocol,
            "--ca",
            files.ca_cert,
            "--crlf",
            stdin=lines,
        )
        session = server.next_session()
        described = connect(
            f"localhost:{server.port}", "--starttls", protocol, "--ca", files.ca_cert, "--json"
        )
    assert done.returncode == 0, err(done)
    assert done.stdout == expected
    # --crlf: every line reached the server with CRLF.
    assert all(line.endswith(b"\r\n") for line in session.seen), session.seen
    assert f"starttls: {protocol} (capabilities inside TLS:" in err(done)
    assert "authorized: true" in err(done)
    assert described.returncode == 0, err(described)
    starttls = json.loads(described.stdout)["starttls"]
    assert starttls["protocol"] == protocol
    assert isinstance(starttls["capabilities"], list)


@pytest.mark.parametrize(
    ("replies", "words"),
    [
        ((b"250-mx\r\n250 STARTTLS\r\n", b"454 4.7.0 TLS not available\r\n"), "TLS not available"),
        ((b"250-mx\r\n250 8BITMIME\r\n",), "does not offer STARTTLS"),
    ],
)
def test_starttls_refused_by_the_server(replies: tuple[bytes, ...], words: str) -> None:
    with PlainServer(b"220 mx ESMTP\r\n", replies) as server:
        done = connect(f"{HOST}:{server.port}", "--starttls", "smtp", "--timeout", "5")
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"STARTTLS refused by the server at {HOST}:{server.port}" in line
    assert words in line
    assert "allow_plaintext" not in line


# ----------------------------------------------------------------------
# Failures: one line each, named


def test_a_server_that_does_not_speak_tls_is_shown() -> None:
    with PlainServer(b"220 hello\r\n") as smtp:
        done = connect(f"{HOST}:{smtp.port}")
    line = one_error_line(done)
    assert done.returncode == 1
    assert f"{HOST}:{smtp.port} does not speak TLS" in line
    assert "looks like SMTP: b'220 hello\\r\\n'" in line
    assert "try --starttls smtp" in line
    reply = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",)
    with PlainServer(replies=reply) as http:
        done = connect(f"{HOST}:{http.port}")
    line = one_error_line(done)
    assert "looks like an HTTP response: b'HTTP/1.1 400 Bad Request\\r\\n'" in line


def test_connection_errors_are_named() -> None:
    port = unused_port()
    refused = connect(f"{HOST}:{port}")
    assert refused.returncode == 1
    assert one_error_line(refused) == (
        f"securepair connect: cannot connect to {HOST}:{port}: Connection refused"
    )
    unknown = connect("no-such-host.invalid:443", "--timeout", "5")
    assert unknown.returncode == 1
    assert "cannot resolve host no-such-host.invalid" in one_error_line(unknown)
    with PlainServer(hold=True) as silent:
        started = time.monotonic()
        stalled = connect(f"{HOST}:{silent.port}", "--timeout", "0.5")
        assert time.monotonic() - started < 5
    assert stalled.returncode == 1
    line = one_error_line(stalled)
    assert f"TLS handshake with {HOST}:{silent.port} timed out after 0.5 s" in line
    with PlainServer(replies=(b"",)) as closer:
        closed = connect(f"{HOST}:{closer.port}")
    assert closed.returncode == 1
    assert "closed the connection without a TLS answer" in one_error_line(closed)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux's SYN handling")
def test_connect_timeout() -> None:
    # A listener whose accept queue is full drops new SYNs: connect() hangs.
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((HOST, port))
            fillers.append(filler)
        time.sleep(0.1)
        done = connect(f"{HOST}:{port}", "--timeout", "0.5")
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"securepair connect: cannot connect to {HOST}:{port}: timed out after 0.5 s"
    )


def test_a_close_without_close_notify_is_an_error(files: Files) -> None:
    with PyServer(files.self_cert, files.self_key, ragged=b"partial\n" * 100) as server:
        done = connect(f"localhost:{server.port}", "--ca", files.self_cert, "-q")
    assert done.returncode == 1
    assert done.stdout == b"partial\n" * 100
    assert "closed the connection without close_notify" in err(done)
    assert "Traceback" not in err(done)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["example.com"], "expected HOST:PORT, got 'example.com' (the port is required)"),
        (["::1:443"], "put an IPv6 address in brackets: [::1]:443"),
        (["[::1]443"], "expected [IPv6]:PORT"),
        (["host:99999"], "the port must be a number from 1 to 65535, not '99999'"),
        ([":443"], "the host is missing"),
        (["h:1", "--ca", "/no/such/ca.pem"], "--ca: file not found: /no/such/ca.pem"),
        (["h:1", "--ca", "/"], "--ca: is a directory, not a PEM file: /"),
        (["h:1", "--key", "{files.client_key}"], "--cert: key is set but cert is missing"),
        (["h:1", "--cert", "{files.ca_cert}"], "--key: cert is set but no private key"),
        (["h:1", "--insecure", "--ca", "{files.ca_cert}"], "--insecure contradicts --ca"),
        (["h:1", "--timeout", "0"], "--timeout must be more than 0 seconds"),
        (["h:1", "--servername", "a..b"], "--servername: 'a..b' is not a valid host name"),
        (["h..x:1"], "'h..x' is not a valid host name; give the name to verify with --servername"),
    ],
)
def test_usage_mistakes_are_one_line_with_status_2(
    files: Files, argv: list[str], words: str
) -> None:
    done = connect(*(arg.format(files=files) for arg in argv))
    assert done.returncode == 2
    line = one_error_line(done)
    assert line.startswith("securepair connect: error: ")
    assert words in line


def test_ipv6_literal(files: Files) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = PyServer(files.self_cert, files.self_key, host="::1")
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    with server:
        done = connect(f"[::1]:{server.port}", "--ca", files.self_cert, "--json")
    assert done.returncode == 0, err(done)
    info = json.loads(done.stdout)
    assert (info["host"], info["address"], info["sni"], info["authorized"]) == (
        "::1",
        "::1",
        None,
        True,
    )


# ----------------------------------------------------------------------
# The small parts, in process


def test_parse_target() -> None:
    assert parse_target("example.com:443") == ("example.com", 443)
    assert parse_target("[2001:db8::1]:8443") == ("2001:db8::1", 8443)
    assert parse_target("10.0.0.1:25") == ("10.0.0.1", 25)
    with pytest.raises(CommandError):
        parse_target("[::1]")


def test_crlf_leaves_crlf_alone_across_reads() -> None:
    convert = _CRLF()
    pieces = [b"a\nb\r", b"\nc\r\n", b"\n", b"d"]
    assert b"".join(convert(p) for p in pieces) == b"a\r\nb\r\nc\r\n\r\nd"


def test_every_explanation_is_words() -> None:
    assert "self-signed" in explain("DEPTH_ZERO_SELF_SIGNED_CERT")
    assert explain("X509_V_ERR_99").endswith("X509_V_ERR_99")
    assert explain(None) == ""
