"""``securepair serve --starttls PROTO``: the server side of STARTTLS as a
tool, tested with the real clients users have (smtplib, imaplib, poplib,
``openssl s_client -starttls``, ``gnutls-cli --starttls-proto``) and with a
real SMTP service (aiosmtpd) behind ``--forward``."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._tools import require_tool
from tests.peers import free_port
from tests.serve_harness import TIMEOUT, ServeCerts, ServeProcess, interact, make_certs


@pytest.fixture
def certs(tmp_path: Path) -> ServeCerts:
    return make_certs(tmp_path)


def _serve(certs: ServeCerts, *args: str) -> ServeProcess:
    return ServeProcess(*args, cwd=certs.folder)


class LineService:
    """A plaintext line service in a thread: sends ``greeting``, then answers
    each line with ``answer(line)`` (``None`` closes)."""

    def __init__(self, greeting: bytes, answer: Callable[[bytes], bytes | None]) -> None:
        self.greeting = greeting
        self.answer = answer
        self.lines: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(TIMEOUT)
        with conn, conn.makefile("rb") as reader:
            conn.sendall(self.greeting)
            for line in reader:
                self.lines.append(line)
                reply = self.answer(line)
                if reply is None:
                    return
                conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def line_service() -> Iterator[Callable[[bytes, Callable[[bytes], bytes | None]], LineService]]:
    made: list[LineService] = []

    def make(greeting: bytes, answer: Callable[[bytes], bytes | None]) -> LineService:
        made.append(LineService(greeting, answer))
        return made[-1]

    yield make
    for service in made:
        service.close()


# ---------------------------------------------------------------------------
# --echo


def test_smtp_echo_with_smtplib(certs: ServeCerts) -> None:
    with _serve(certs, "--starttls", "smtp", "--echo") as serve:
        with smtplib.SMTP("127.0.0.1", serve.port, timeout=TIMEOUT) as smtp:
            code, _ = smtp.ehlo()
            assert code == 250 and smtp.has_extn("starttls")
            # Before TLS the RFC's answer, not an echo.
            assert smtp.docmd("MAIL FROM:<a@example.org>")[0] == 530
            assert smtp.starttls(context=certs.client_context())[0] == 220
            smtp.ehlo()
            assert not smtp.has_extn("starttls")  # not offered twice
            # Everything else comes back as it was sent.
            smtp.send(b"HELLO THERE\r\n")
            assert smtp.sock is not None
            assert smtp.sock.recv(100) == b"HELLO THERE\r\n"
            smtp.close()
        connected = serve.wait_for(lambda e: e["event"] == "connected")
        assert connected["protocol"] == "smtp"
        assert connected["version"] in ("TLSv1.2", "TLSv1.3")
        assert serve.stop() == 0


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3", "ftp", "xmpp", "sieve", "postgres"])
def test_openssl_starttls_clients(certs: ServeCerts, proto: str) -> None:
    openssl = require_tool("openssl")
    # Postgres is binary after TLS: nothing line-shaped to echo.  An XMPP
    # client opens a new stream inside TLS before anything else.
    line = {
        "postgres": b"",
        "xmpp": b"<stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        b"<presence/>\n",
    }.get(proto, b"echo this line\n")
    with _serve(certs, "--starttls", proto, "--echo") as serve:
        args = [openssl, "s_client", "-connect", f"127.0.0.1:{serve.port}", "-starttls", proto]
        args += ["-CAfile", str(certs.ca_file), "-verify_return_error", "-quiet"]
        if proto == "xmpp":
            args += ["-xmpphost", "localhost"]
        out = interact(
            args, line, (lambda _: bool(serve.events("connected"))) if not line else None
        )
        event = serve.wait_for(lambda e: e["event"] in ("connected", "starttls-failed"))
        assert event["event"] == "connected", serve.text()
        assert event["protocol"] == proto
        assert line.strip()[-12:] in out
        serve.stop()


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3", "ftp"])
def test_gnutls_starttls_clients(certs: ServeCerts, proto: str) -> None:
    gnutls = require_tool("gnutls-cli", package="gnutls-bin")
    with _serve(certs, "--starttls", proto, "--echo") as serve:
        out = interact(
            [gnutls, "--starttls-proto", proto, "--port", str(serve.port),
             "--x509cafile", str(certs.ca_file), "localhost"],
            b"ping over gnutls\n",
        )  # fmt: skip
        assert b"ping over gnutls" in out
        assert serve.wait_for(lambda e: e["event"] == "connected")["protocol"] == proto
        serve.stop()


def test_proxy_protocol_does_not_keep_direct_clients_waiting(certs: ServeCerts) -> None:
    """The STARTTLS server speaks first: a direct client is greeted at once,
    even when PROXY headers are accepted from a trusted proxy."""
    with _serve(
        certs, "--starttls", "smtp", "--echo", "--proxy-protocol", "--trusted-proxy", "127.0.0.3"
    ) as serve:
        with socket.create_connection(serve.address, timeout=2) as sock:
            assert sock.recv(100).startswith(b"220 ")
            # A PROXY line from a client that is not trusted is a command,
            # refused like any other before TLS, and believed by nobody.
            sock.sendall(b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n")
            assert sock.recv(100)[:1] == b"5"
        serve.stop()


def test_client_that_never_says_starttls_is_timed_out(certs: ServeCerts) -> None:
    with _serve(certs, "--starttls", "smtp", "--echo", "--handshake-timeout", "1") as serve:
        with socket.create_connection(serve.address, timeout=TIMEOUT) as sock:
            assert sock.recv(100).startswith(b"220 ")
            sock.sendall(b"EHLO x\r\n")
            sock.recv(1000)
            # ... and then nothing: closed at the deadline.
            rest = b""
            while chunk := sock.recv(1000):
                rest += chunk
        event = serve.wait_for(lambda e: e["event"] == "timeout")
        assert "handshake-timeout" in event["reason"]


# ---------------------------------------------------------------------------
# --forward


def test_smtp_forward_to_aiosmtpd(certs: ServeCerts) -> None:
    """Mail sent through ``serve --starttls smtp`` reaches a real SMTP
    server that has no TLS of its own; the client sees one conversation."""
    pytest.importorskip("aiosmtpd", reason="aiosmtpd is not installed (pip install '.[test]')")
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append(envelope.content)  # type: ignore[attr-defined]
            return "250 2.0.0 stored"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="backend")
    controller.start()
    try:
        with _serve(certs, "--starttls", "smtp", "--forward", f"127.0.0.1:{port}") as serve:
            with smtplib.SMTP("127.0.0.1", serve.port, timeout=TIMEOUT) as smtp:
                smtp.starttls(context=certs.client_context())
                code, banner = smtp.ehlo()
                assert code == 250
                assert banner.startswith(b"backend")  # the service answers inside TLS
                smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nbody\r\n")
            assert received and b"body" in received[0]
            event = serve.wait_for(lambda e: e["event"] == "closed")
            assert event["bytes_in"] > 0 and event["bytes_out"] > 0
            serve.stop()
    finally:
        controller.stop()


def test_imap_forward(certs: ServeCerts, line_service: Callable[..., LineService]) -> None:
    def answer(line: bytes) -> bytes | None:
        tag, _, command = line.decode().strip().partition(" ")
        verb = command.split(" ")[0].upper()
        if verb == "CAPABILITY":
            return f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode()
        if verb == "LOGIN":
            return f"{tag} OK logged in\r\n".encode()
        if verb == "LOGOUT":
            return f"* BYE\r\n{tag} OK bye\r\n".encode()
        return f"{tag} BAD unknown\r\n".encode()

    service = line_service(b"* OK backend IMAP ready\r\n", answer)
    with _serve(certs, "--starttls", "imap", "--forward", service.address) as serve:
        imap = imaplib.IMAP4("127.0.0.1", serve.port, timeout=TIMEOUT)
        imap.starttls(certs.client_context())
        assert imap.login("user", "secret")[0] == "OK"
        imap.logout()
        serve.wait_for(lambda e: e["event"] == "closed")
        serve.stop()
    # The service saw only what came after TLS: no STARTTLS, its greeting
    # was taken over, and the client's capability question went to it.
    commands = [line.split(b" ")[1].strip().upper() for line in service.lines]
    assert commands[:1] == [b"CAPABILITY"]
    assert b"STARTTLS" not in commands and b"LOGIN" in commands


def test_pop3_forward(certs: ServeCerts, line_service: Callable[..., LineService]) -> None:
    def answer(line: bytes) -> bytes | None:
        verb = line.split(b" ")[0].strip().upper()
        if verb == b"CAPA":
            return b"+OK\r\nUSER\r\n.\r\n"
        if verb in (b"USER", b"PASS"):
            return b"+OK\r\n"
        if verb == b"STAT":
            return b"+OK 2 320\r\n"
        if verb == b"QUIT":
            return b"+OK bye\r\n"
        return b"-ERR unknown\r\n"

    service = line_service(b"+OK backend POP3 ready\r\n", answer)
    with _serve(certs, "--starttls", "pop3", "--forward", service.address) as serve:
        pop = poplib.POP3("127.0.0.1", serve.port, timeout=TIMEOUT)
        pop.stls(certs.client_context())
        pop.user("user")
        pop.pass_("secret")
        assert pop.stat() == (2, 320)
        pop.quit()
        serve.stop()
    assert b"STLS" not in b"".join(service.lines)


def test_service_that_refuses_is_logged(
    certs: ServeCerts, line_service: Callable[..., LineService]
) -> None:
    service = line_service(b"554 5.3.2 not accepting mail\r\n", lambda line: None)
    with _serve(certs, "--starttls", "smtp", "--forward", service.address) as serve:
        with smtplib.SMTP("127.0.0.1", serve.port, timeout=TIMEOUT) as smtp:
            smtp.starttls(context=certs.client_context())
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.ehlo()
        event = serve.wait_for(lambda e: e["event"] == "service-unreachable")
        assert "554" in event["reason"]
        serve.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--starttls", "gopher", "--echo"], "unknown protocol"),
        (["--starttls", "xmpp", "--forward", "127.0.0.1:5222"], "use --echo"),
        (["--starttls", "smtp", "--echo", "--forward", "127.0.0.1:25"], "exclude each other"),
    ],
)
def test_starttls_option_errors(certs: ServeCerts, args: list[str], message: str) -> None:
    from tests.serve_harness import run_serve

    done = run_serve(*args, cwd=certs.folder)
    assert done.returncode == 2
    assert done.stderr.startswith("securepair serve: error: ")
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
