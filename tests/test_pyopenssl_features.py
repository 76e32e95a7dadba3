"""What only the pyOpenSSL backend can do, and the stdlib's refusal of each.

Verify-but-don't-reject with Node's error codes, the peer's chain, keying
material export (checked against ``openssl s_client -keymatexport``), channel
bindings, the key log (checked by letting ``tshark`` decrypt a real loopback
capture), OCSP stapling, renegotiation on request, and cross-backend interop
(two OpenSSL versions talking to each other).
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from securepair import SecurePair, TLSConfig, certgen, pyopenssl_config
from securepair.errors import (
    CertificateVerificationError,
    ConfigError,
    LocalProtocolError,
    SecurePairError,
    TLSError,
    UnsupportedFeatureError,
)
from securepair.events import (
    AlertReceived,
    AlertSent,
    CloseNotifyReceived,
    HandshakeComplete,
    OCSPResponse,
    SessionTicket,
)
from securepair.testing.link import Link
from tests._tools import require_tool
from tests.fixtures_engine import DEFAULT_HOSTNAME, Certs, Identity
from tests.fixtures_records import load_c_framer
from tests.peers import HOST, PairDriver, listener, openssl_s_client
from tests.peers import Certs as FileCerts

VERSIONS = ("TLSv1.2", "TLSv1.3")


def _pair(
    client: dict[str, Any],
    server: dict[str, Any],
    *,
    hostname: str = DEFAULT_HOSTNAME,
    session: Any = None,
) -> tuple[SecurePair, SecurePair, Link]:
    c = SecurePair(
        TLSConfig(**client), server_side=False, server_hostname=hostname, session=session
    )
    s = SecurePair(TLSConfig(**server), server_side=True)
    return c, s, Link(c, s)


# --------------------------------------------------------------------------
# Verify but don't reject: Node's codes


CASES = [
    # (server identity attribute, client's expected authorization_error)
    ("ecdsa", None),
    ("self_signed", "DEPTH_ZERO_SELF_SIGNED_CERT"),
    ("unknown_ca", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
    ("expired", "CERT_HAS_EXPIRED"),
    ("not_yet_valid", "CERT_NOT_YET_VALID"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("identity", "code"), CASES)
def test_client_verifies_without_rejecting(
    certs: Certs, version: str, identity: str, code: str | None
) -> None:
    server_identity: Identity = getattr(certs, identity)
    client, server, link = _pair(
        {"ca": certs.ca_pem, "reject_unauthorized": False, "max_version": version},
        {**server_identity.options()},
    )
    assert client.backend == "pyopenssl"  # "auto" picked the backend that can
    link.handshake()
    event = next(e for e in client.events() if isinstance(e, HandshakeComplete))
    assert event.authorized is (code is None)
    assert event.authorization_error == code
    assert client.authorized is (code is None)
    assert client.authorization_error == code
    # The data still flows: the application decides what an unauthorized
    # peer may do.
    client.cleartext.write(b"ping")
    link.pump()
    assert server.cleartext.read() == b"ping"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("identity", "code"), [c for c in CASES if c[1]])
def test_client_rejects_by_default_with_the_same_code(
    certs: Certs, version: str, identity: str, code: str
) -> None:
    server_identity: Identity = getattr(certs, identity)
    client, server, link = _pair(
        {"ca": certs.ca_pem, "backend": "pyopenssl", "max_version": version},
        {**server_identity.options()},
    )
    with pytest.raises(CertificateVerificationError) as caught:
        link.handshake()
    assert caught.value.code == code
    assert caught.value.alert_sent
    # The alert went out first: fed to the server, it fails with it.
    alert = client.encrypted.read()
    assert alert
    with pytest.raises(TLSError) as server_side:
        server.encrypted.write(alert)
    assert server_side.value.alert == caught.value.alert
    assert AlertReceived(description=caught.value.alert, fatal=True) in list(server.events())


@pytest.mark.parametrize("in_c", [True, False], ids=["c-filter", "python-callback"])
def test_alerts_are_reported_through_either_info_callback(
    certs: Certs, in_c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Contexts get the C filter when the C module is built, the Python
    # callback when it is not; both must turn alerts, and only alerts,
    # into events.
    callback, kind = pyopenssl_config._info_callback(in_c=in_c)
    if in_c and kind != "c":
        load_c_framer()  # skips locally when not built; fails under CI
        pytest.fail("the C module has no sp_info_filter: rebuild it (pip install -e .)")
    assert kind == ("c" if in_c else "python")
    monkeypatch.setattr(pyopenssl_config, "_INFO_CALLBACK", callback)
    client, server, link = _pair(
        {"ca": certs.ca_pem, "backend": "pyopenssl"},
        {**certs.self_signed.options(), "backend": "pyopenssl"},
    )
    with pytest.raises(CertificateVerificationError) as caught:
        link.handshake()
    alert = caught.value.alert
    assert alert == "unknown_ca"
    assert [e for e in client.events() if isinstance(e, (AlertSent, AlertReceived))] == [
        AlertSent(description=alert, fatal=True)
    ]
    with pytest.raises(TLSError):
        server.encrypted.write(client.encrypted.read())
    assert [e for e in server.events() if isinstance(e, (AlertSent, AlertReceived))] == [
        AlertReceived(description=alert, fatal=True)
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_host_name_is_reported_as_node_does(certs: Certs, version: str) -> None:
    client, _server, link = _pair(
        {"ca": certs.ca_pem, "reject_unauthorized": False, "max_version": version},
        certs.ecdsa.options(),
        hostname="wrong.example.org",
    )
    link.handshake()
    assert client.authorized is False
    assert client.authorization_error == "ERR_TLS_CERT_ALTNAME_INVALID"
    _rejecting, _, link = _pair(
        {"ca": certs.ca_pem, "backend": "pyopenssl", "max_version": version},
        certs.ecdsa.options(),
        hostname="wrong.example.org",
    )
    with pytest.raises(CertificateVerificationError) as caught:
        link.handshake()
    assert caught.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"


def test_ip_address_is_checked_against_ip_sans() -> None:
    ca = certgen.CertificateAuthority()
    leaf = ca.issue(["localhost", "127.0.0.1"])
    server = {"cert": leaf.cert_pem, "key": leaf.key_pem}
    good, _, link = _pair({"ca": ca.cert_pem, "backend": "pyopenssl"}, server, hostname="127.0.0.1")
    link.handshake()
    assert good.authorized
    bad, _, link = _pair(
        {"ca": ca.cert_pem, "reject_unauthorized": False}, server, hostname="127.0.0.2"
    )
    link.handshake()
    assert bad.authorization_error == "ERR_TLS_CERT_ALTNAME_INVALID"
    # Rejecting (the default), the handshake fails on the address.
    _, _, link = _pair({"ca": ca.cert_pem, "backend": "pyopenssl"}, server, hostname="127.0.0.2")
    with pytest.raises(CertificateVerificationError) as caught:
        link.handshake()
    assert caught.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"
    # Without the host check, an address is not checked either.
    unchecked, _, link = _pair(
        {"ca": ca.cert_pem, "backend": "pyopenssl", "check_hostname": False},
        server,
        hostname="127.0.0.2",
    )
    link.handshake()
    assert unchecked.authorized


def test_self_signed_in_chain() -> None:
    stranger = certgen.CertificateAuthority("stranger")
    leaf = stranger.issue([DEFAULT_HOSTNAME])
    trusted = certgen.CertificateAuthority("trusted")
    client, _, link = _pair(
        {"ca": trusted.cert_pem, "reject_unauthorized": False},
        {"cert": leaf.cert_pem + stranger.cert_pem, "key": leaf.key_pem},
    )
    link.handshake()
    assert client.authorization_error == "SELF_SIGNED_CERT_IN_CHAIN"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_pins_the_servers_own_certificate(version: str) -> None:
    """The classic set-up: ``gencert`` makes server.cert/server.pem, clients
    copy server.cert and trust exactly it."""
    own = certgen.self_signed(["localhost", "127.0.0.1"])
    server = {"cert": own.cert_pem, "key": own.key_pem}
    pinned, _, link = _pair(
        {"ca": own.cert_pem, "backend": "pyopenssl", "max_version": version},
        server,
        hostname="localhost",
    )
    link.handshake()
    assert pinned.authorized and pinned.authorization_error is None
    other = certgen.CertificateAuthority()
    told, _, link = _pair(
        {"ca": other.cert_pem, "reject_unauthorized": False, "max_version": version},
        server,
        hostname="localhost",
    )
    link.handshake()
    assert told.authorized is False
    assert told.authorization_error == "DEPTH_ZERO_SELF_SIGNED_CERT"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("identity", "code"),
    [
        ("client", None),
        ("self_signed", "DEPTH_ZERO_SELF_SIGNED_CERT"),
        ("expired", "CERT_HAS_EXPIRED"),
    ],
)
def test_server_verifies_client_certificates_without_rejecting(
    certs: Certs, version: str, identity: str, code: str | None
) -> None:
    client_identity: Identity = getattr(certs, identity)
    _client, server, link = _pair(
        {"ca": certs.ca_pem, "max_version": version, **client_identity.options()},
        {
            **certs.ecdsa.options(),
            "ca": certs.ca_pem,
            "request_cert": True,
            "reject_unauthorized": False,
        },
    )
    link.handshake()
    assert server.backend == "pyopenssl"
    assert server.authorized is (code is None)
    assert server.authorization_error == code
    assert server.peer_certificate() is not None


def test_server_without_client_certificate_reports_it(certs: Certs) -> None:
    _client, server, link = _pair(
        {"ca": certs.ca_pem},
        {
            **certs.ecdsa.options(),
            "ca": certs.ca_pem,
            "request_cert": True,
            "reject_unauthorized": False,
        },
    )
    link.handshake()
    assert server.authorized is False
    assert server.authorization_error == "NO_PEER_CERTIFICATE"
    assert server.peer_certificate() is None


def test_stdlib_refuses_verify_without_reject_and_names_pyopenssl(certs: Certs) -> None:
    with pytest.raises(UnsupportedFeatureError, match="pyopenssl") as caught:
        TLSConfig(backend="stdlib", ca=certs.ca_pem, reject_unauthorized=False)
    assert caught.value.option == "reject_unauthorized"
    for option, value in (
        ("request_ocsp", True),
        ("allow_renegotiation", True),
        ("keylog_callback", print),
        ("session_id_context", b"ctx"),
    ):
        with pytest.raises(UnsupportedFeatureError, match="pyopenssl"):
            TLSConfig(backend="stdlib", ca=certs.ca_pem, **{option: value})
        assert TLSConfig(ca=certs.ca_pem, **{option: value}).resolved_backend() == "pyopenssl"


# --------------------------------------------------------------------------
# Chains


def test_peer_chain_in_node_form() -> None:
    root = certgen.CertificateAuthority("root")
    leaf = root.issue([DEFAULT_HOSTNAME])
    client, _, link = _pair(
        {"ca": root.cert_pem, "backend": "pyopenssl"},
        {"cert": leaf.cert_pem, "key": leaf.key_pem},
    )
    link.handshake()
    detailed = client.peer_certificate(detailed=True)
    assert detailed is not None
    assert detailed["subject"] == {"CN": DEFAULT_HOSTNAME}
    issuer = detailed["issuerCertificate"]
    assert issuer["subject"] == {"CN": "root"}
    assert issuer["issuerCertificate"] is issuer  # a root links to itself, as in Node


# --------------------------------------------------------------------------
# Keying material, channel bindings


@pytest.mark.parametrize("version", VERSIONS)
def test_both_sides_export_the_same_keying_material(certs: Certs, version: str) -> None:
    options = {"backend": "pyopenssl", "max_version": version}
    client, server, link = _pair(
        {"ca": certs.ca_pem, **options}, {**certs.ecdsa.options(), **options}
    )
    link.handshake()
    for context in (None, b"", b"some context"):
        ours = client.export_keying_material("EXPERIMENTAL-securepair", 32, context)
        assert len(ours) == 32
        assert ours == server.export_keying_material(b"EXPERIMENTAL-securepair", 32, context)
    assert client.export_keying_material("EXPERIMENTAL-a", 32) != client.export_keying_material(
        "EXPERIMENTAL-b", 32
    )
    ours_finished, peers_finished = client.finished()
    assert ours_finished == server.finished()[1]
    assert peers_finished == server.finished()[0]
    if version == "TLSv1.2":
        unique = client.channel_binding("tls-unique")
        assert unique and unique == server.channel_binding("tls-unique")
    else:
        assert client.channel_binding("tls-unique") is None
    exporter = client.channel_binding("tls-exporter")
    assert exporter == server.channel_binding("tls-exporter")


def test_stdlib_has_tls_unique_but_not_keying_material(certs: Certs) -> None:
    client, server, link = _pair(
        {"ca": certs.ca_pem, "max_version": "TLSv1.2"}, certs.ecdsa.options()
    )
    link.handshake()
    assert client.backend == "stdlib"
    assert client.channel_binding("tls-unique") == server.channel_binding("tls-unique")
    with pytest.raises(UnsupportedFeatureError, match="pyopenssl"):
        client.export_keying_material("EXPERIMENTAL-x", 16)
    with pytest.raises(UnsupportedFeatureError, match="pyopenssl"):
        client.renegotiate()


@contextlib.contextmanager
def _serve_one(config: TLSConfig, script: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Accept one connection on 127.0.0.1 in a thread and run ``script``
    (driver) on it; yields (port, result)."""
    result: dict[str, Any] = {}
    with listener() as lsock:
        port = lsock.getsockname()[1]

        def run() -> None:
            try:
                sock, _ = lsock.accept()
                with sock:
                    driver = PairDriver(SecurePair(config, server_side=True), sock)
                    result["value"] = script(driver)
            except BaseException as exc:  # reported to the test below
                result["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield port, result
        thread.join(10)
        assert not thread.is_alive()
        if "error" in result:
            raise result["error"]


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("version", VERSIONS)
def test_keying_material_agrees_with_openssl_s_client(tmp_path: Path, version: str) -> None:
    openssl = require_tool("openssl")
    files = FileCerts(tmp_path)
    config = TLSConfig(cert=files.server_chain_pem, key=files.server_key_pem, backend="pyopenssl")
    label = "EXPERIMENTAL-securepair-test"

    def script(driver: PairDriver) -> bytes:
        driver.handshake()
        value = driver.pair.export_keying_material(label, 20)
        driver.send(b"exported\n")
        driver.wait_peer_close()
        driver.close()
        return value

    with _serve_one(config, script) as (port, result):
        extra = ["-CAfile", files.ca_file, "-keymatexport", label, "-keymatexportlen", "20"]
        with openssl_s_client(openssl, port=port, version=version, extra=extra) as cli:
            cli.wait_for("exported")
            cli.close_stdin()
            cli.wait()
    printed = re.search(r"Keying material:\s*([0-9A-F]+)", cli.output)
    assert printed, cli.output
    assert bytes.fromhex(printed.group(1)) == result["value"]


# --------------------------------------------------------------------------
# Key log


def test_keylog_lines_are_nss_format(certs: Certs) -> None:
    lines: list[bytes] = []
    _client, _server, link = _pair(
        {"ca": certs.ca_pem, "keylog_callback": lines.append}, certs.ecdsa.options()
    )
    link.handshake()
    labels = {line.split()[0] for line in lines}
    assert labels >= {
        b"CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        b"SERVER_HANDSHAKE_TRAFFIC_SECRET",
        b"CLIENT_TRAFFIC_SECRET_0",
        b"SERVER_TRAFFIC_SECRET_0",
    }
    for line in lines:
        _label, client_random, secret = line.split()
        assert re.fullmatch(rb"[0-9a-f]{64}", client_random)
        assert re.fullmatch(rb"[0-9a-f]{64,96}", secret)


@pytest.mark.peer("tshark")
@pytest.mark.parametrize("version", VERSIONS)
def test_tshark_decrypts_a_loopback_capture_with_the_key_log(tmp_path: Path, version: str) -> None:
    """A real capture on the loopback interface, decrypted by Wireshark's
    dissector with the lines our callback wrote, shows the secret; without
    the key log it does not."""
    tshark = require_tool("tshark", package="tshark")
    dumpcap = require_tool("dumpcap", package="tshark")
    ca = certgen.CertificateAuthority()
    leaf = ca.issue(["localhost"])
    keylog = tmp_path / "keys.log"
    secret = b"the-secret-only-the-keylog-reveals-" + version.encode()
    server_config = TLSConfig(cert=leaf.cert_pem, key=leaf.key_pem, max_version=version)
    client_config = TLSConfig(
        ca=ca.cert_pem, backend="pyopenssl", keylog_filename=str(keylog), max_version=version
    )
    capture = tmp_path / "session.pcapng"

    def script(driver: PairDriver) -> None:
        driver.handshake()
        driver.recv_until(b"\n")
        driver.send(b"ok\n")
        driver.wait_peer_close()
        driver.close()

    with _serve_one(server_config, script) as (port, _result):
        dump = subprocess.Popen(
            [dumpcap, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(capture)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_capture(capture, dump)
            with socket.create_connection((HOST, port), timeout=5) as sock:
                driver = PairDriver(
                    SecurePair(client_config, server_side=False, server_hostname="localhost"),
                    sock,
                )
                driver.handshake()
                driver.send(secret + b"\n")
                driver.recv_until(b"\n")
                driver.close()
                driver.wait_peer_close()
            time.sleep(0.3)  # let dumpcap write the last packets
        finally:
            dump.terminate()
            dump.wait(5)
            if dump.stderr is not None:
                dump.stderr.close()
    follow = [tshark, "-r", str(capture), "-q", "-z", "follow,tls,ascii,0"]
    decrypted = subprocess.run(
        [*follow, "-o", f"tls.keylog_file:{keylog}"], capture_output=True, timeout=60, check=True
    ).stdout
    assert secret in decrypted.replace(b"\n", b"")
    opaque = subprocess.run(follow, capture_output=True, timeout=60, check=True).stdout
    assert secret not in opaque


def _wait_for_capture(capture: Path, dump: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if dump.poll() is not None:
            raise AssertionError(f"dumpcap exited: {dump.stderr.read() if dump.stderr else ''}")
        if capture.exists() and capture.stat().st_size > 0:
            time.sleep(0.2)
            return
        time.sleep(0.05)
    raise AssertionError("dumpcap did not start capturing")


# --------------------------------------------------------------------------
# OCSP stapling


@pytest.mark.parametrize("version", VERSIONS)
def test_ocsp_staple_reaches_the_client(certs: Certs, version: str) -> None:
    staple = b"0\x03\n\x01\x00"  # a DER OCSPResponse: successful, no body
    asked: list[str | None] = []

    def stapler(server_name: str | None) -> bytes:
        asked.append(server_name)
        return staple

    client, _server, link = _pair(
        {"ca": certs.ca_pem, "request_ocsp": True, "max_version": version},
        {**certs.ecdsa.options(), "ocsp_staple": stapler},
    )
    link.handshake()
    events = list(client.events())
    assert OCSPResponse(response=staple) in events
    assert asked == [DEFAULT_HOSTNAME]


def test_no_staple_is_reported_as_none(certs: Certs) -> None:
    client, _, link = _pair(
        {"ca": certs.ca_pem, "request_ocsp": True},
        {**certs.ecdsa.options(), "backend": "pyopenssl"},
    )
    link.handshake()
    assert OCSPResponse(response=None) in list(client.events())


# --------------------------------------------------------------------------
# Renegotiation


def test_renegotiation_on_request(certs: Certs) -> None:
    options = {"max_version": "TLSv1.2", "allow_renegotiation": True}
    client, server, link = _pair(
        {"ca": certs.ca_pem, **options}, {**certs.ecdsa.options(), **options}
    )
    link.handshake()
    client.renegotiate()
    client.cleartext.write(b"during")
    link.pump()
    server.cleartext.write(b"after")
    link.pump()
    assert server.cleartext.read() == b"during"
    assert client.cleartext.read() == b"after"
    assert client._conn._conn.total_renegotiations() == 1  # type: ignore[attr-defined]


def test_renegotiation_refused_by_default_is_a_clean_alert(certs: Certs) -> None:
    client, server, link = _pair(
        {"ca": certs.ca_pem, "max_version": "TLSv1.2", "allow_renegotiation": True},
        {**certs.ecdsa.options(), "backend": "pyopenssl"},
    )
    link.handshake()
    client.renegotiate()
    with pytest.raises(SecurePairError):
        for _ in range(10):  # bounded: a refusal, never a hang
            link.pump()
            server.cleartext.write(b"x")
    assert any(
        isinstance(e, AlertSent) and e.description == "no_renegotiation" for e in server.events()
    )


def test_disable_renegotiation(certs: Certs) -> None:
    options = {"max_version": "TLSv1.2", "allow_renegotiation": True}
    client, server, link = _pair(
        {"ca": certs.ca_pem, **options}, {**certs.ecdsa.options(), **options}
    )
    link.handshake()
    server.disable_renegotiation()
    client.renegotiate()
    with pytest.raises(SecurePairError):
        for _ in range(10):
            link.pump()
            server.cleartext.write(b"x")


def test_renegotiate_needs_an_open_tls12_connection(certs: Certs) -> None:
    options = {"allow_renegotiation": True}
    client, _, link = _pair({"ca": certs.ca_pem, **options}, {**certs.ecdsa.options(), **options})
    link.handshake()
    with pytest.raises(LocalProtocolError, match=r"TLS 1\.2"):
        client.renegotiate()
    client.cleartext.write(b"still fine")  # a refused call does not break the pair
    fresh, _, _ = _pair({"ca": certs.ca_pem, **options}, {**certs.ecdsa.options(), **options})
    with pytest.raises(LocalProtocolError):
        fresh.renegotiate()


# --------------------------------------------------------------------------
# Cross-backend interop: two OpenSSL versions


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("client_backend", "server_backend"), [("stdlib", "pyopenssl"), ("pyopenssl", "stdlib")]
)
def test_cross_backend_data_close_and_resumption(
    certs: Certs, version: str, client_backend: str, server_backend: str
) -> None:
    client_config = TLSConfig(ca=certs.ca_pem, backend=client_backend, max_version=version)
    server_config = TLSConfig(**certs.rsa.options(), backend=server_backend)
    client = SecurePair(client_config, server_side=False, server_hostname=DEFAULT_HOSTNAME)
    server = SecurePair(server_config, server_side=True)
    link = Link(client, server)
    link.handshake()
    assert client.version == server.version == version
    payload = bytes(range(256)) * 1000
    client.cleartext.write(payload)
    server.cleartext.write(payload[::-1])
    link.pump()
    assert server.cleartext.read() == payload
    assert client.cleartext.read() == payload[::-1]
    tickets = [e for e in client.events() if isinstance(e, SessionTicket)]
    assert tickets
    client.close()
    link.pump()
    assert any(isinstance(e, CloseNotifyReceived) for e in server.events())
    server.close()
    link.pump()
    with pytest.raises(ConfigError, match="session"):
        SecurePair(
            TLSConfig(ca=certs.ca_pem, backend=client_backend),
            server_side=False,
            server_hostname=DEFAULT_HOSTNAME,
            session=tickets[0].session,
        )
    again = SecurePair(
        client_config,
        server_side=False,
        server_hostname=DEFAULT_HOSTNAME,
        session=tickets[0].session,
    )
    resumed = SecurePair(server_config, server_side=True)
    Link(again, resumed).handshake()
    assert again.session_reused and resumed.session_reused


def test_an_openssl_context_is_accepted(certs: Certs) -> None:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    client = SecurePair(ctx, server_side=False, server_hostname=DEFAULT_HOSTNAME)
    server = SecurePair(TLSConfig(**certs.ecdsa.options()), server_side=True)
    Link(client, server).handshake()
    assert client.backend == "pyopenssl"
    assert client.peer_certificate() is not None
