"""PostgreSQL SSLRequest: S/N/E, CVE-2021-23222 and CVE-2021-23214, the
server's plaintext startup rules and direct TLS."""

from __future__ import annotations

import struct

import pytest

from securepair import SecurePair
from securepair.starttls import (
    InjectionError,
    PeerClosedError,
    PipelinePolicy,
    PostgreSQLClient,
    PostgreSQLServer,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSUsageError,
    State,
)
from securepair.starttls.events import (
    ConnectionClosed,
    PlaintextRequested,
    ReadyToUpgrade,
    TLSRefused,
)
from securepair.starttls.postgres import GSSENC_REQUEST, SSL_REQUEST, error_response
from securepair.testing.link import Link
from tests.test_starttls_common import configs, script, serve

_PARAMS = b"user\0alice\0database\0postgres\0\0"
STARTUP = struct.pack("!ii", 8 + len(_PARAMS), 3 << 16) + _PARAMS
CANCEL = struct.pack("!iiii", 16, 80877102, 1234, 5678)


def test_client_s() -> None:
    neg = PostgreSQLClient()
    assert neg.data_to_send() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    neg.receive_data(b"S")
    assert list(neg.events()) == [ReadyToUpgrade()]


def test_client_cve_2021_23222() -> None:
    """Bytes after S are injected, never buffered for later."""
    neg = PostgreSQLClient()
    neg.data_to_send()
    with pytest.raises(InjectionError) as info:
        neg.receive_data(b"SR\0\0\0\x08\0\0\0\0")
    assert info.value.injected == b"R\0\0\0\x08\0\0\0\0"
    neg = PostgreSQLClient()
    script(neg, b"S")
    with pytest.raises(InjectionError):
        neg.receive_data(b"Z")


def test_client_answer_before_request_sent() -> None:
    with pytest.raises(InjectionError):
        PostgreSQLClient().receive_data(b"S")


def test_client_n() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(PostgreSQLClient(), b"N")
    neg = PostgreSQLClient(allow_plaintext=True)
    events, _ = script(neg, b"N")
    assert isinstance(events[0], TLSRefused) and neg.state is State.PLAINTEXT


def test_client_error_response() -> None:
    with pytest.raises(PeerClosedError, match=r"unauthenticated.*nope"):
        script(PostgreSQLClient(), error_response("08P01", "nope"))
    neg = PostgreSQLClient()
    neg.data_to_send()
    data = error_response("08P01", "split")
    for i in range(len(data) - 1):
        neg.receive_data(data[i : i + 1])
    with pytest.raises(PeerClosedError):
        neg.receive_data(data[-1:])
    with pytest.raises(StartTLSProtocolError):
        script(PostgreSQLClient(), b"E\xff\xff\xff\xff")


def test_client_garbage() -> None:
    with pytest.raises(StartTLSProtocolError):
        script(PostgreSQLClient(), b"H")


# --------------------------------------------------------------------------
# Server


def test_server_ssl_request() -> None:
    events, out = serve(PostgreSQLServer(), SSL_REQUEST)
    assert out == b"S" and events == [ReadyToUpgrade(pipelined=0)]


def test_server_cve_2021_23214() -> None:
    """A query pipelined behind the SSLRequest never runs: with the
    default policy it is TLS input and the handshake fails."""
    from securepair.errors import NotTLSError

    neg = PostgreSQLServer()
    events, _ = serve(neg, SSL_REQUEST + STARTUP)
    assert events == [ReadyToUpgrade(pipelined=len(STARTUP))]
    with pytest.raises(NotTLSError):
        neg.start_tls(configs()[0])
    assert neg.pair is not None and neg.pair.cleartext.read() == b""
    neg = PostgreSQLServer(policy=PipelinePolicy.ABORT)
    with pytest.raises(InjectionError):
        neg.receive_data(SSL_REQUEST + STARTUP)


def test_server_gssenc_then_ssl() -> None:
    neg = PostgreSQLServer()
    events, out = serve(neg, GSSENC_REQUEST, SSL_REQUEST)
    assert out == b"NS"
    assert events == [ReadyToUpgrade(pipelined=0)]


def test_server_plaintext_startup_refused() -> None:
    neg = PostgreSQLServer()
    events, out = serve(neg, STARTUP)
    assert out.startswith(b"E") and b"28000" in out
    assert events == [ConnectionClosed(reason="refused")]


@pytest.mark.parametrize(("message", "kind"), [(STARTUP, "startup"), (CANCEL, "cancel")])
def test_server_plaintext_allowed(message: bytes, kind: str) -> None:
    neg = PostgreSQLServer(require_tls=False)
    events, out = serve(neg, message[:5], message[5:] + b"more")
    assert out == b""
    assert events == [PlaintextRequested(kind=kind)]
    assert neg.state is State.PLAINTEXT
    assert neg.trailing_data == message + b"more"


def test_server_cancel_without_tls_even_when_required() -> None:
    neg = PostgreSQLServer()
    events, _ = serve(neg, CANCEL)
    assert events == [PlaintextRequested(kind="cancel")]


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack("!ii", 4, 80877103),
        struct.pack("!ii", 20000, 3 << 16),
        struct.pack("!ii", 12, 80877103) + b"\0" * 4,
        struct.pack("!ii", 12, 80877102) + b"\0" * 4,
    ],
)
def test_server_malformed(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        serve(PostgreSQLServer(), bad)


def test_server_unsupported_protocol() -> None:
    neg = PostgreSQLServer()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(struct.pack("!ii", 8, 2 << 16))
    assert b"0A000" in neg.data_to_send()


def test_server_direct_tls() -> None:
    server_cfg, client_cfg = configs()
    client = SecurePair(client_cfg, server_side=False, server_hostname="localhost")
    hello = client.encrypted.read()
    neg = PostgreSQLServer(direct_tls=True)
    neg.receive_data(hello[:3])
    assert list(neg.events()) == [ReadyToUpgrade(pipelined=0)]
    neg.receive_data(hello[3:])
    pair = neg.start_tls(server_cfg)
    Link(client, pair).handshake()
    # Without direct_tls the same bytes are an invalid startup packet.
    with pytest.raises(StartTLSProtocolError):
        PostgreSQLServer().receive_data(hello)


def test_server_buffer_must_hold_a_startup_packet() -> None:
    with pytest.raises(StartTLSUsageError):
        PostgreSQLServer(max_buffer_size=4096)
