"""Real STARTTLS clients against our servers, over 127.0.0.1.

The server is :class:`tests.starttls_peers.ReferenceServer`: the one-call
server helper (:func:`securepair.starttls.socket.starttls_server_socket`)
with the protocol's default negotiator, then a small application inside
TLS.  The clients are other people's code:

* ``openssl s_client -starttls`` for smtp, lmtp, imap, pop3, ftp, xmpp,
  ldap, postgres, nntp and sieve;
* ``gnutls-cli --starttls-proto`` for the same ten (all it has, but https);
* Python's ``smtplib``, ``imaplib``, ``poplib``, ``ftplib`` and
  ``nntplib`` with their ``starttls()`` (``stls()``, ``auth()``).

Every client verifies the certificate (CA file, host name) and then uses
the session: a command answered inside TLS by our application, and, for
the line protocols, the capability command answered inside TLS by the
negotiator (without STARTTLS).  The server records what its application
read inside TLS; the test checks it is exactly what the client sent after
the upgrade, and nothing from before it.
"""

from __future__ import annotations

import ftplib
import imaplib
import poplib
import smtplib
import subprocess
import warnings
from collections.abc import Iterator

import pytest

from tests._tools import require_tool

from .starttls_peers import PKI, WAIT, ReferenceServer, make_pki

with warnings.catch_warnings():
    # nntplib is deprecated since 3.11 (PEP 594) and pytest turns warnings
    # into errors: import it knowingly.
    warnings.simplefilter("ignore", DeprecationWarning)
    import nntplib

PROTOCOLS = ["smtp", "lmtp", "imap", "pop3", "ftp", "xmpp", "ldap", "postgres", "nntp", "sieve"]


def _xmpp_stream(domain: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        "<presence/>"
    ).encode()


#: What each client sends once TLS is up, and what the server's
#: application must have read (inside TLS), and a reply the client must
#: have printed.
def _script(protocol: str, domain: str) -> tuple[bytes, list[bytes], bytes]:
    lines = {
        "smtp": [b"NOOP\r\n", b"QUIT\r\n"],
        "lmtp": [b"NOOP\r\n", b"QUIT\r\n"],
        "imap": [b"t2 CAPABILITY\r\n", b"t3 NOOP\r\n", b"t4 LOGOUT\r\n"],
        "pop3": [b"CAPA\r\n", b"NOOP\r\n", b"QUIT\r\n"],
        "ftp": [b"FEAT\r\n", b"NOOP\r\n", b"QUIT\r\n"],
        "nntp": [b"CAPABILITIES\r\n", b"DATE\r\n", b"QUIT\r\n"],
        "sieve": [b"CAPABILITY\r\n", b"NOOP\r\n", b"LOGOUT\r\n"],
    }
    expect = {
        "smtp": b"250 2.0.0 ECHO NOOP",
        "lmtp": b"250 2.0.0 ECHO NOOP",
        "imap": b"t3 OK ECHO NOOP",
        "pop3": b"+OK ECHO NOOP",
        "ftp": b"200 ECHO NOOP",
        "nntp": b"111 20260101000000",
        "sieve": b'OK "ECHO NOOP"',
        "xmpp": b"ECHO <presence/>",
        "ldap": b"ECHO ping",
        "postgres": b"ECHO ping",
    }[protocol]
    if protocol == "xmpp":
        # The server's follow-up reads the new stream header; the
        # application gets what came after it.
        return _xmpp_stream(domain), [b"<presence/>"], expect
    if protocol in ("ldap", "postgres"):
        return b"ping", [b"ping"], expect
    return b"".join(lines[protocol]), lines[protocol], expect


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with make_pki() as made:
        yield made


def _run(cmd: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run a client; it exits when our server closes (after QUIT, LOGOUT,
    or the echo of a binary protocol)."""
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=WAIT, check=False)


def _check(server: ReferenceServer, protocol: str, sent: list[bytes]) -> None:
    session = server.next_session()
    assert session.error is None, session.error
    assert session.version in ("TLSv1.2", "TLSv1.3")
    # Inside TLS the application read exactly what the client sent there.
    assert b"".join(session.seen) == b"".join(sent)
    if protocol in ("smtp", "lmtp", "imap", "pop3", "ftp", "nntp", "sieve"):
        assert session.seen == sent


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_openssl_s_client(pki: PKI, protocol: str) -> None:
    openssl = require_tool("openssl", package="openssl")
    stdin, sent, expect = _script(protocol, "localhost")
    with ReferenceServer(protocol, pki.server_config()) as server:
        cmd = [
            openssl,
            "s_client",
            "-starttls",
            protocol,
            "-connect",
            f"127.0.0.1:{server.port}",
            "-CAfile",
            pki.ca_file,
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-brief",
            "-ign_eof",
        ]
        if protocol in ("smtp", "lmtp", "xmpp"):
            cmd += ["-name", "localhost"]  # EHLO/LHLO name, XMPP 'to'
        done = _run(cmd, stdin)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert b"Verification: OK" in done.stderr
        assert expect in done.stdout, done.stdout
        _check(server, protocol, sent)


@pytest.mark.peer("gnutls-cli")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gnutls_cli(pki: PKI, protocol: str) -> None:
    gnutls = require_tool("gnutls-cli", package="gnutls-bin")
    # gnutls-cli opens the XMPP stream to the host it connects to.
    stdin, sent, expect = _script(protocol, "127.0.0.1")
    with ReferenceServer(protocol, pki.server_config(), xmpp_domain="127.0.0.1") as server:
        cmd = [
            gnutls,
            f"--starttls-proto={protocol}",
            "--x509cafile",
            pki.ca_file,
            "--verify-hostname",
            "localhost",
            "-p",
            str(server.port),
            "127.0.0.1",
        ]
        done = _run(cmd, stdin)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert b"The certificate is trusted" in done.stdout + done.stderr
        assert expect in done.stdout, done.stdout
        _check(server, protocol, sent)


# ----------------------------------------------------------------------
# Python's own clients (the stdlib's ssl module on the client side)


def test_smtplib(pki: PKI) -> None:
    with ReferenceServer("smtp", pki.server_config()) as server:
        smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=WAIT)
        try:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            code, _ = smtp.starttls(context=pki.stdlib_client_context())
            assert code == 220
            # EHLO inside TLS: answered by the negotiator, STARTTLS gone.
            smtp.ehlo()
            assert not smtp.has_extn("starttls")
            assert smtp.noop() == (250, b"2.0.0 ECHO noop")
        finally:
            smtp.quit()
        session = server.next_session()
        assert session.error is None
        assert [line.split()[0].upper() for line in session.seen] == [b"EHLO", b"NOOP", b"QUIT"]


def test_imaplib(pki: PKI) -> None:
    with ReferenceServer("imap", pki.server_config()) as server:
        imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=WAIT)
        assert "STARTTLS" in imap.capabilities
        assert "LOGINDISABLED" in imap.capabilities
        typ, _ = imap.starttls(ssl_context=pki.stdlib_client_context())
        assert typ == "OK"
        # imaplib asked CAPABILITY again inside TLS: fresh, no STARTTLS.
        assert "STARTTLS" not in imap.capabilities
        assert "LOGINDISABLED" not in imap.capabilities
        assert imap.noop()[0] == "OK"
        imap.logout()
        session = server.next_session()
        assert session.error is None
        verbs = [line.split()[1] for line in session.seen]
        assert verbs == [b"CAPABILITY", b"NOOP", b"LOGOUT"]


def test_poplib(pki: PKI) -> None:
    with ReferenceServer("pop3", pki.server_config()) as server:
        pop = poplib.POP3("127.0.0.1", server.port, timeout=WAIT)
        assert "STLS" in pop.capa()
        assert pop.stls(context=pki.stdlib_client_context()).startswith(b"+OK")
        assert "STLS" not in pop.capa()  # CAPA inside TLS
        assert pop.noop() == b"+OK ECHO NOOP"
        pop.quit()
        session = server.next_session()
        assert session.error is None
        assert session.seen == [b"CAPA\r\n", b"NOOP\r\n", b"QUIT\r\n"]


def test_ftplib(pki: PKI) -> None:
    with ReferenceServer("ftp", pki.server_config()) as server:
        ftp = ftplib.FTP_TLS(context=pki.stdlib_client_context(), timeout=WAIT)
        ftp.connect("127.0.0.1", server.port)
        # ftplib verifies the host it connected to: 127.0.0.1 (IP SAN).
        assert ftp.auth().startswith("234")
        assert ftp.voidcmd("NOOP") == "200 ECHO NOOP"
        ftp.prot_p()  # PBSZ 0 + PROT P inside TLS
        ftp.quit()
        session = server.next_session()
        assert session.error is None
        assert session.seen == [b"NOOP\r\n", b"PBSZ 0\r\n", b"PROT P\r\n", b"QUIT\r\n"]


def test_nntplib(pki: PKI) -> None:
    with ReferenceServer("nntp", pki.server_config()) as server:
        nntp = nntplib.NNTP("127.0.0.1", server.port, readermode=False, timeout=WAIT)
        assert "STARTTLS" in nntp.getcapabilities()
        nntp.starttls(context=pki.stdlib_client_context())
        # nntplib asked CAPABILITIES again inside TLS.
        assert "STARTTLS" not in nntp.getcapabilities()
        assert nntp.date()[1].year == 2026
        nntp.quit()
        session = server.next_session()
        assert session.error is None
        assert session.seen == [b"CAPABILITIES\r\n", b"DATE\r\n", b"QUIT\r\n"]
