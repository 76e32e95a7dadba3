"""SecurePair against real TLS peers over 127.0.0.1, TLS 1.2 and TLS 1.3.

Each peer runs as server against our client and as client against our
server: Python's ``ssl`` sockets in a thread, ``openssl s_server`` /
``s_client`` and ``gnutls-serv`` / ``gnutls-cli``.  Every test checks data
both ways, the negotiated version, ALPN, SNI, certificates and a clean
close, as far as the tool can show them.  The helpers are in
``tests/peers.py``.

What the tools do at the end of a connection (the tests rely on it):

* ``openssl s_server -rev`` answers our close_notify with its own and
  prints "CONNECTION CLOSED".  Killed, it sends nothing: a ragged EOF.
* ``openssl s_client`` sends close_notify when its stdin ends, shuts down
  its sending side and waits (up to 0.5 s) for the socket to close before it
  exits; it does not read TLS any more, so close the socket promptly.
* ``gnutls-serv --echo`` answers our close_notify with its own; on SIGTERM
  it sends nothing (ragged EOF).
* ``gnutls-cli`` sends close_notify when its stdin ends, then keeps reading
  (a TLS half-close: it prints what we send after its close_notify) until
  ours arrives: "Peer has closed the GnuTLS connection", exit status 0.
* Python ``SSLSocket.unwrap()`` sends close_notify and waits for the peer's;
  a server that has read the peer's close_notify may still send first.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from securepair import (
    CertificateVerificationError,
    NotTLSError,
    PairState,
    RaggedEOFError,
    SecurePair,
    TLSAlertReceivedError,
    TLSConfig,
    TLSError,
)
from securepair.events import (
    AlertReceived,
    AlertSent,
    CloseNotifyReceived,
    HandshakeComplete,
    RaggedEOF,
    SessionTicket,
)

from ._tools import require_tool
from .peers import (
    SNI_NAME,
    Certs,
    PairDriver,
    PySSLClient,
    PySSLServer,
    accepted,
    connect,
    gnutls_cli,
    gnutls_serv,
    listener,
    openssl_s_client,
    openssl_s_server,
    plaintext_server,
    read_until,
)

VERSIONS = ["TLSv1.2", "TLSv1.3"]
_SSL_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

#: Our side offers both; every peer is configured to accept only the second,
#: so the agreed protocol shows that the peer's choice was honoured.
OUR_ALPN = ["h2", "http/1.1"]
PEER_ALPN = "http/1.1"


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("interop-certs"))


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def gnutls_serv_tool() -> str:
    return require_tool("gnutls-serv", package="gnutls-bin")


@pytest.fixture
def gnutls_cli_tool() -> str:
    return require_tool("gnutls-cli", package="gnutls-bin")


def client_config(certs: Certs, version: str, *, with_cert: bool = False) -> TLSConfig:
    extra: dict[str, Any] = {}
    if with_cert:
        extra = {"cert": certs.client_chain_pem, "key": certs.client_key_pem}
    return TLSConfig(
        ca=certs.ca_pem,
        min_version=version,
        max_version=version,
        alpn_protocols=OUR_ALPN,
        **extra,
    )


def server_config(certs: Certs, version: str, *, request_cert: bool = False) -> TLSConfig:
    return TLSConfig(
        cert=certs.server_chain_pem,
        key=certs.server_key_pem,
        ca=certs.ca_pem if request_cert else None,
        request_cert=request_cert,
        min_version=version,
        max_version=version,
        alpn_protocols=OUR_ALPN,
    )


def client_pair(config: TLSConfig, **kwargs: Any) -> SecurePair:
    return SecurePair(config, server_side=False, server_hostname=SNI_NAME, **kwargs)


def check_server_identity(event: HandshakeComplete, version: str) -> None:
    """What our client must have learned about our test server."""
    assert event.version == version
    assert event.authorized is True
    assert event.authorization_error is None
    assert event.server_name == SNI_NAME
    cert = event.peer_certificate
    assert cert is not None
    assert f"DNS:{SNI_NAME}" in cert["subjectaltname"]


def check_client_identity(event: HandshakeComplete, version: str) -> None:
    """What our server must have learned about the test client."""
    assert event.version == version
    assert event.server_name == SNI_NAME
    assert event.alpn_protocol == PEER_ALPN
    assert event.authorized is True
    assert event.authorization_error is None
    cert = event.peer_certificate
    assert cert is not None
    assert cert["subject"]["CN"] == "client.example"


def closes(driver: PairDriver) -> list[Any]:
    return [e for e in driver.events if isinstance(e, CloseNotifyReceived)]


# ----------------------------------------------------------------------------
# Python ssl sockets


def py_context(certs: Certs, version: str, *, server_side: bool) -> ssl.SSLContext:
    if server_side:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.server_chain_file, certs.server_key_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(certs.client_chain_file, certs.client_key_file)
    ctx.load_verify_locations(cafile=certs.ca_file)
    ctx.minimum_version = ctx.maximum_version = _SSL_VERSIONS[version]
    ctx.set_alpn_protocols([PEER_ALPN])
    return ctx


def test_client_with_python_ssl_server(certs: Certs, version: str) -> None:
    bulk = bytes(range(256)) * 512  # 128 KiB: many records each way
    request = bulk + b"END\n"

    def handler(sock: ssl.SSLSocket, info: dict[str, Any]) -> None:
        info["got"] = read_until(sock, b"END\n")
        sock.sendall(b"python says: " + info["got"])
        # suppress_ragged_eofs=False: b"" here is the client's close_notify.
        info["after"] = sock.recv(100)
        # Half-close: the client closed its side; this side may still send.
        sock.sendall(b"after your close_notify\n")
        sock.unwrap()
        info["unwrapped"] = True

    server = PySSLServer(py_context(certs, version, server_side=True), handler)
    with server, connect(server.port) as sock:
        driver = PairDriver(client_pair(client_config(certs, version, with_cert=True)), sock)
        event = driver.handshake()
        check_server_identity(event, version)
        assert event.alpn_protocol == PEER_ALPN
        assert driver.pair.version == version
        driver.send(request)
        expected = b"python says: " + request
        assert driver.recv_exactly(len(expected)) == expected
        driver.close()
        assert driver.pair.state is PairState.CLOSING
        # We closed our side and can still read what the server sends.
        expected += b"after your close_notify\n"
        assert driver.recv_exactly(len(expected)) == expected
        assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
        driver.wait_eof()
        assert driver.received == expected
        assert driver.pair.state is PairState.CLOSED
        info = server.join()
    assert info["got"] == request
    assert info["after"] == b""
    assert info["unwrapped"] is True
    assert info["version"] == version
    assert info["alpn"] == PEER_ALPN
    assert info["server_name"] == SNI_NAME
    assert dict(x[0] for x in info["peercert"]["subject"])["commonName"] == "client.example"
    # The server's session ticket came up as an event (TLS 1.3: after the
    # handshake, read along with the data).
    assert any(isinstance(e, SessionTicket) for e in driver.events)


def test_server_with_python_ssl_client(certs: Certs, version: str) -> None:
    def handler(sock: ssl.SSLSocket, info: dict[str, Any]) -> None:
        sock.sendall(b"hello from python\n")
        info["got"] = read_until(sock, b"\n")
        sock.unwrap()  # sends close_notify, then waits for the server's
        info["unwrapped"] = True

    with listener() as lsock:
        port = lsock.getsockname()[1]
        client = PySSLClient(
            py_context(certs, version, server_side=False), port, handler, server_hostname=SNI_NAME
        )
        with client, accepted(lsock) as sock:
            pair = SecurePair(server_config(certs, version, request_cert=True), server_side=True)
            driver = PairDriver(pair, sock)
            event = driver.handshake()
            check_client_identity(event, version)
            assert pair.peer_certificate()["subject"]["CN"] == "client.example"
            assert driver.recv_until(b"\n") == b"hello from python\n"
            driver.send(b"hello from securepair\n")
            assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
            assert pair.state is PairState.PEER_CLOSED
            driver.close()
            driver.wait_eof()
            assert pair.state is PairState.CLOSED
            info = client.join()
    assert info["got"] == b"hello from securepair\n"
    assert info["unwrapped"] is True
    assert info["version"] == version
    assert info["alpn"] == PEER_ALPN


# ----------------------------------------------------------------------------
# openssl s_server / s_client


def s_server(openssl: str, certs: Certs, version: str, *extra: str) -> Any:
    return openssl_s_server(
        openssl,
        cert=certs.server_leaf_file,
        key=certs.server_key_file,
        version=version,
        extra=["-cert_chain", certs.server_intermediates_file, "-alpn", PEER_ALPN, *extra],
    )


@pytest.mark.peer("openssl")
def test_client_with_openssl_s_server(openssl: str, certs: Certs, version: str) -> None:
    with s_server(openssl, certs, version) as (proc, port), connect(port) as sock:
        driver = PairDriver(client_pair(client_config(certs, version)), sock)
        event = driver.handshake()
        check_server_identity(event, version)
        assert event.alpn_protocol == PEER_ALPN
        # -rev answers each line reversed.
        driver.send(b"hello from securepair\n")
        assert driver.recv_until(b"\n") == b"riaperuces morf olleh\n"
        driver.close()
        assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
        proc.wait_for("CONNECTION CLOSED")
        assert f"Protocol version: {version}" in proc.output


@pytest.mark.peer("openssl")
def test_client_resumes_session_with_openssl_s_server(
    openssl: str, certs: Certs, version: str
) -> None:
    config = client_config(certs, version)
    with s_server(openssl, certs, version) as (proc, port):
        with connect(port) as sock:
            driver = PairDriver(client_pair(config), sock)
            first = driver.handshake()
            assert first.session_reused is False
            driver.send(b"one\n")
            assert driver.recv_until(b"\n") == b"eno\n"
            session = driver.session_ticket()
            driver.close()
            driver.wait_peer_close()
        proc.wait_for("CONNECTION CLOSED")

        with connect(port) as sock:
            driver = PairDriver(client_pair(config, session=session), sock)
            second = driver.handshake()
            assert second.session_reused is True
            assert driver.pair.session_reused is True
            assert second.version == version
            assert second.peer_certificate["subject"] == first.peer_certificate["subject"]
            driver.send(b"two\n")
            assert driver.recv_until(b"\n") == b"owt\n"
            driver.close()
            assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
        # (s_server -rev does not print whether it resumed; the client's
        # session_reused is OpenSSL's own answer.)
        proc.wait_for(r"(?s)CONNECTION CLOSED.*CONNECTION CLOSED")


@pytest.mark.peer("openssl")
def test_client_rejects_unknown_ca_openssl_s_server(
    openssl: str, certs: Certs, version: str
) -> None:
    chain, key = certs.stranger()
    server = openssl_s_server(openssl, cert=chain, key=key, version=version)
    with server as (proc, port), connect(port) as sock:
        driver = PairDriver(client_pair(client_config(certs, version)), sock)
        with pytest.raises(CertificateVerificationError) as caught:
            driver.handshake()
        error = caught.value
        assert error.code == "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
        assert error.verify_code == 20
        assert error.alert == "unknown_ca"
        assert error.alert_sent is True
        assert driver.pair.state is PairState.ERROR
        assert AlertSent(description="unknown_ca", fatal=True) in driver.events
        # The alert went out before the error came up: s_server read it.
        proc.wait_for(r"alert unknown ca|alert number 48")


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("allow_ragged_eof", [False, True])
def test_client_sees_ragged_eof_when_openssl_s_server_dies(
    openssl: str, certs: Certs, version: str, allow_ragged_eof: bool
) -> None:
    """A killed s_server sends no close_notify: the transport just ends.
    Strict by default (RaggedEOFError); tolerated as an event on request."""
    config = TLSConfig(
        ca=certs.ca_pem,
        min_version=version,
        max_version=version,
        allow_ragged_eof=allow_ragged_eof,
    )
    with s_server(openssl, certs, version) as (proc, port), connect(port) as sock:
        driver = PairDriver(client_pair(config), sock)
        driver.handshake()
        driver.send(b"last words\n")
        assert driver.recv_until(b"\n") == b"sdrow tsal\n"
        proc.proc.kill()
        proc.wait()
        if allow_ragged_eof:
            assert isinstance(driver.wait_peer_close(), RaggedEOF)
            assert not closes(driver)
            assert driver.pair.state is PairState.CLOSED
        else:
            with pytest.raises(RaggedEOFError, match="without close_notify"):
                driver.wait_peer_close()
            assert driver.pair.state is PairState.ERROR
        # Whatever happened, the data that did arrive was delivered.
        assert driver.received == b"sdrow tsal\n"


def s_client_args(certs: Certs, *extra: str, name: str = SNI_NAME) -> list[str]:
    return [
        "-servername",
        name,
        "-CAfile",
        certs.ca_file,
        "-verify_return_error",
        "-verify_hostname",
        name,
        "-alpn",
        PEER_ALPN,
        "-nocommands",
        *extra,
    ]


@pytest.mark.peer("openssl")
def test_server_with_openssl_s_client(openssl: str, certs: Certs, version: str) -> None:
    config = server_config(certs, version, request_cert=True)
    extra = s_client_args(certs, "-cert", certs.client_chain_file, "-key", certs.client_key_file)
    with listener() as lsock:
        port = lsock.getsockname()[1]
        with openssl_s_client(openssl, port=port, version=version, extra=extra) as cli:
            with accepted(lsock) as sock:
                pair = SecurePair(config, server_side=True)
                driver = PairDriver(pair, sock)
                event = driver.handshake()
                check_client_identity(event, version)
                cli.write(b"hello from s_client\n")
                assert driver.recv_until(b"\n") == b"hello from s_client\n"
                driver.send(b"hello from securepair\n")
                cli.wait_for("hello from securepair")
                # s_client sends close_notify when its input ends.
                cli.close_stdin()
                assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
                driver.close()
                # s_client shuts down its sending side and waits (up to
                # 0.5 s) for us to close the socket before it exits.
                driver.wait_eof()
            assert cli.wait() == 0
    out = cli.output
    assert "Verify return code: 0 (ok)" in out
    assert f"Verified peername: {SNI_NAME}" in out
    assert f"ALPN protocol: {PEER_ALPN}" in out
    assert re.search(rf"New, {re.escape(version)}, Cipher is", out)
    # Our server sent its intermediate: s_client only trusts the root.
    assert re.search(r"(?m)^ 1 s:", out)


@pytest.mark.peer("openssl")
def test_server_requires_certificate_from_openssl_s_client(
    openssl: str, certs: Certs, version: str
) -> None:
    """request_cert=True and s_client sends no certificate: the pair fails
    with OpenSSL's reason, and the alert it names reached s_client."""
    config = server_config(certs, version, request_cert=True)
    alert = {"TLSv1.2": "handshake_failure", "TLSv1.3": "certificate_required"}[version]
    printed = {"TLSv1.2": "alert handshake failure", "TLSv1.3": "alert certificate required"}
    with listener() as lsock:
        port = lsock.getsockname()[1]
        with openssl_s_client(
            openssl, port=port, version=version, extra=s_client_args(certs)
        ) as cli:
            with accepted(lsock) as sock:
                pair = SecurePair(config, server_side=True)
                driver = PairDriver(pair, sock)
                with pytest.raises(TLSError) as caught:
                    driver.handshake()
                error = caught.value
                assert error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
                assert error.alert == alert
                assert error.alert_sent is True
                assert pair.state is PairState.ERROR
                assert AlertSent(description=alert, fatal=True) in driver.events
                cli.wait_for(printed[version])
            assert cli.wait() != 0


@pytest.mark.peer("openssl")
def test_server_post_handshake_with_openssl_s_client(
    openssl: str, certs: Certs, version: str
) -> None:
    """s_client's stdin commands: in TLS 1.3 "K" sends a KeyUpdate that asks
    for ours, which the pair answers by itself while reading; in TLS 1.2 "R"
    renegotiates, which the pair refuses with a no_renegotiation alert, and
    s_client gives up with a fatal alert: an error, not a hang."""
    config = server_config(certs, version)
    extra = s_client_args(certs)
    extra.remove("-nocommands")
    with listener() as lsock:
        port = lsock.getsockname()[1]
        with openssl_s_client(openssl, port=port, version=version, extra=extra) as cli:
            with accepted(lsock) as sock:
                pair = SecurePair(config, server_side=True)
                driver = PairDriver(pair, sock)
                driver.handshake()
                driver.send(b"before\n")
                cli.wait_for("before")
                if version == "TLSv1.3":
                    cli.write(b"K\n")
                    cli.wait_for("KEYUPDATE")
                    cli.write(b"after the key update\n")
                    driver.recv_until(b"after the key update\n")
                    driver.send(b"new keys both ways\n")
                    cli.wait_for("new keys both ways")
                    cli.close_stdin()
                    assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
                    driver.close()
                    driver.wait_eof()
                    assert driver.received == b"after the key update\n"
                else:
                    cli.write(b"R\n")
                    cli.wait_for("RENEGOTIATING")
                    with pytest.raises(TLSAlertReceivedError) as caught:
                        driver.wait_peer_close()
                    assert caught.value.alert == "handshake_failure"
                    assert pair.state is PairState.ERROR
                    assert AlertReceived(description="handshake_failure", fatal=True) in (
                        driver.events
                    )
            code = cli.wait()
    if version == "TLSv1.3":
        assert code == 0
    else:
        assert code != 0
        assert "no renegotiation" in cli.output


@pytest.mark.peer("openssl")
def test_server_resumes_session_with_openssl_s_client(
    openssl: str, certs: Certs, version: str, tmp_path: Path
) -> None:
    config = server_config(certs, version)
    session_file = str(tmp_path / "session.pem")
    reused = []
    for flag in ("-sess_out", "-sess_in"):
        extra = s_client_args(certs, flag, session_file, name="localhost")
        with listener() as lsock:
            port = lsock.getsockname()[1]
            with openssl_s_client(openssl, port=port, version=version, extra=extra) as cli:
                with accepted(lsock) as sock:
                    driver = PairDriver(SecurePair(config, server_side=True), sock)
                    event = driver.handshake()
                    assert event.version == version
                    assert event.server_name == "localhost"
                    assert event.alpn_protocol == PEER_ALPN
                    reused.append(event.session_reused)
                    driver.send(b"ping\n")
                    # Once the data is printed, the TLS 1.3 tickets sent
                    # before it have been read (and saved by -sess_out).
                    cli.wait_for("ping")
                    cli.close_stdin()
                    assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
                    driver.close()
                    driver.wait_eof()
                assert cli.wait() == 0
        assert Path(session_file).exists()
    assert reused == [False, True]
    assert re.search(rf"Reused, {re.escape(version)}, Cipher is", cli.output)


# ----------------------------------------------------------------------------
# gnutls-serv / gnutls-cli


@pytest.mark.peer("gnutls-serv")
def test_client_with_gnutls_serv(gnutls_serv_tool: str, certs: Certs, version: str) -> None:
    server = gnutls_serv(
        gnutls_serv_tool,
        cert=certs.server_chain_file,
        key=certs.server_key_file,
        version=version,
        extra=[
            "--alpn",
            PEER_ALPN,
            "--x509cafile",
            certs.ca_file,
            "--require-client-cert",
            "--verify-client-cert",
        ],
    )
    lines = b"".join(b"line %05d of the echo test\n" % i for i in range(2000))  # ~54 KB
    with server as (proc, connect_to_server), connect_to_server() as sock:
        driver = PairDriver(client_pair(client_config(certs, version, with_cert=True)), sock)
        event = driver.handshake()
        check_server_identity(event, version)
        assert event.alpn_protocol == PEER_ALPN
        driver.send(lines)
        assert driver.recv_exactly(len(lines)) == lines
        driver.close()
        assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
        out = proc.wait_for(r"Processing \d+ bytes command").string
        assert f"Given server name[1]: {SNI_NAME}" in out
        assert f"Application protocol: {PEER_ALPN}" in out
        assert f"Version: {version.replace('v', '')}" in out
        assert "CN=client.example" in out
        assert "Status: The certificate is trusted" in out


@pytest.mark.peer("gnutls-cli")
def test_server_with_gnutls_cli(gnutls_cli_tool: str, certs: Certs, version: str) -> None:
    config = server_config(certs, version, request_cert=True)
    extra = [
        "--x509cafile",
        certs.ca_file,
        "--sni-hostname",
        SNI_NAME,
        "--verify-hostname",
        SNI_NAME,
        "--alpn",
        PEER_ALPN,
        "--x509certfile",
        certs.client_chain_file,
        "--x509keyfile",
        certs.client_key_file,
    ]
    with listener() as lsock:
        port = lsock.getsockname()[1]
        with (
            gnutls_cli(gnutls_cli_tool, port=port, version=version, extra=extra) as cli,
            accepted(lsock) as sock,
        ):
            pair = SecurePair(config, server_side=True)
            driver = PairDriver(pair, sock)
            event = driver.handshake()
            check_client_identity(event, version)
            cli.write(b"hello from gnutls-cli\n")
            assert driver.recv_until(b"\n") == b"hello from gnutls-cli\n"
            driver.send(b"hello from securepair\n")
            cli.wait_for("hello from securepair")
            # gnutls-cli sends close_notify when its input ends, then reads
            # until ours: the half-closed connection still carries our data.
            cli.close_stdin()
            assert isinstance(driver.wait_peer_close(), CloseNotifyReceived)
            assert pair.state is PairState.PEER_CLOSED
            driver.send(b"after your close_notify\n")
            cli.wait_for("after your close_notify")
            driver.close()
            cli.wait_for("Peer has closed the GnuTLS connection")
            assert cli.wait() == 0
            driver.wait_eof()
    out = cli.output
    assert "The certificate is trusted" in out
    assert f"Application protocol: {PEER_ALPN}" in out
    assert f"({version.replace('v', '')}-X.509)" in out


# ----------------------------------------------------------------------------
# Not TLS at all


def test_client_against_plaintext_smtp_server(certs: Certs, version: str) -> None:
    greeting = b"220 mail.example.com ESMTP\r\n"
    with plaintext_server(greeting) as port, connect(port) as sock:
        driver = PairDriver(client_pair(client_config(certs, version)), sock)
        with pytest.raises(NotTLSError) as caught:
            driver.handshake()
    error = caught.value
    assert "220 mail.example.com" in str(error)
    assert error.first_bytes == greeting[: len(error.first_bytes)]
    assert error.first_bytes.startswith(b"220 mail.example.com")
    assert driver.pair.state is PairState.ERROR
    # Nothing was taken for TLS data: no cleartext, no handshake.
    assert driver.received == b""
    assert not any(isinstance(e, HandshakeComplete) for e in driver.events)
