"""Failures: alerts go out before errors come up, errors are typed and keep
OpenSSL's codes, a peer that is not speaking TLS is told apart, garbage
costs bounded memory and time, and every byte fed in is accounted for."""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securepair import PairState, SecurePair
from securepair.config import MIN_BUFFER_LIMIT
from securepair.errors import (
    CertificateVerificationError,
    HandshakeNotCompleteError,
    LocalProtocolError,
    NotTLSError,
    RemoteProtocolError,
    SecurePairError,
    TLSAlertReceivedError,
    TLSError,
)
from securepair.events import AlertReceived, AlertSent, HandshakeComplete
from securepair.testing.link import Chunking, byte_by_byte, fixed_cuts, whole

from .fixtures_engine import (
    Certs,
    drain,
    examples,
    feed,
    feed_until_error,
    of_type,
    payload,
    transfer,
)

# --------------------------------------------------------------------------
# Certificate verification on the client: alerts first.

#: (server identity, host name the client asks for, Node's code, the alert
#: OpenSSL sends for it).
SERVER_CERT_FAILURES = {
    "wrong host name": (
        "ecdsa",
        "wrong.example.org",
        "ERR_TLS_CERT_ALTNAME_INVALID",
        "bad_certificate",
    ),
    "unknown CA": ("unknown_ca", "example.com", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "unknown_ca"),
    "expired": ("expired", "example.com", "CERT_HAS_EXPIRED", "certificate_expired"),
    "not yet valid": ("not_yet_valid", "example.com", "CERT_NOT_YET_VALID", "bad_certificate"),
    "self-signed": ("self_signed", "example.com", "DEPTH_ZERO_SELF_SIGNED_CERT", "unknown_ca"),
}


def assert_failed_for_good(pair: SecurePair, error: SecurePairError) -> None:
    """ERROR is final: TLS calls refuse, chained to the first error."""
    assert pair.state is PairState.ERROR
    for call in (lambda: pair.cleartext.write(b"x"), lambda: pair.encrypted.write(b"x")):
        with pytest.raises(LocalProtocolError, match="failed earlier") as later:
            call()
        assert later.value.__cause__ is error
    pair.close()  # allowed, does nothing
    pair.encrypted.write_eof()  # the transport ending after a failure is no news
    assert pair.cleartext.read() == b""


@pytest.mark.parametrize("case", list(SERVER_CERT_FAILURES))
def test_server_certificate_rejected(
    make_pair_link: Any, certs: Certs, chunking: Chunking, case: str
) -> None:
    identity, hostname, code, alert = SERVER_CERT_FAILURES[case]
    client, server, _ = make_pair_link(
        server_opts={"identity": getattr(certs, identity)}, server_hostname=hostname
    )
    feed(server, client.encrypted.read(), chunking)
    error = feed_until_error(client, server.encrypted.read(), chunking)

    assert isinstance(error, CertificateVerificationError)
    assert error.code == code
    assert error.library == "SSL"
    assert error.reason == "CERTIFICATE_VERIFY_FAILED"
    assert error.verify_code is not None
    assert error.alert == alert
    assert error.alert_sent is True
    assert code in str(error)
    with pytest.raises(HandshakeNotCompleteError):
        client.peer_certificate()
    assert_failed_for_good(client, error)
    assert of_type(drain(client), AlertSent) == [AlertSent(description=alert, fatal=True)]

    # The alert is on the encrypted side, after the error as before it.
    wire = client.encrypted.read()
    assert wire
    received = feed_until_error(server, wire, chunking)
    assert isinstance(received, TLSAlertReceivedError)
    assert isinstance(received, RemoteProtocolError)
    assert received.alert == alert
    assert received.alert_sent is False
    assert received.reason and alert.upper() in received.reason
    assert alert in str(received)
    assert of_type(drain(server), AlertReceived) == [AlertReceived(description=alert, fatal=True)]
    assert_failed_for_good(server, received)


#: Client certificates the server rejects: (identity, Node's code, alert).
CLIENT_CERT_FAILURES = {
    "unknown CA": ("unknown_ca", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "unknown_ca"),
    "expired": ("expired", "CERT_HAS_EXPIRED", "certificate_expired"),
    "self-signed": ("self_signed", "DEPTH_ZERO_SELF_SIGNED_CERT", "unknown_ca"),
    "not yet valid": ("not_yet_valid", "CERT_NOT_YET_VALID", "bad_certificate"),
}


@pytest.mark.parametrize("case", list(CLIENT_CERT_FAILURES))
def test_client_certificate_rejected(
    make_pair_link: Any, certs: Certs, tls_version: str, case: str, request: Any
) -> None:
    identity, code, alert = CLIENT_CERT_FAILURES[case]
    client_identity = getattr(certs, identity)
    client, server, _link = make_pair_link(
        client_opts={"cert": client_identity.cert, "key": client_identity.key},
        server_opts={"request_cert": True, "ca": certs.ca_pem},
    )
    with pytest.raises(CertificateVerificationError) as caught:
        for _ in range(5):
            feed(server, client.encrypted.read())
            feed(client, server.encrypted.read())
    error = caught.value
    assert error.code == code
    assert server.state is PairState.ERROR
    wire = server.encrypted.read()
    assert wire, "the alert is readable after the error"
    received = feed_until_error(client, wire)
    assert isinstance(received, TLSAlertReceivedError)
    assert received.alert == error.alert
    assert error.alert == alert


def test_truncated_client_hello(make_pair_link: Any, chunking: Chunking) -> None:
    """A ClientHello cut short inside its own length fields: decode_error,
    sent before the error is raised."""
    client, server, _ = make_pair_link()
    hello = client.encrypted.read()
    body = hello[9:][:60]  # the handshake body, truncated
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    record = b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message
    error = feed_until_error(server, record, chunking)
    assert type(error) is TLSError
    assert error.alert == "decode_error"
    assert error.alert_sent
    assert error.library == "SSL" and error.reason
    assert of_type(drain(server), AlertSent) == [AlertSent(description="decode_error", fatal=True)]
    received = feed_until_error(client, server.encrypted.read(), chunking)
    assert isinstance(received, TLSAlertReceivedError)
    assert received.alert == "decode_error"


def test_truncated_server_flight_then_eof(make_pair_link: Any, chunking: Chunking) -> None:
    """The handshake cut by the network: a typed error, not a hang."""
    from securepair.errors import RaggedEOFError

    client, server, _ = make_pair_link()
    feed(server, client.encrypted.read())
    flight = server.encrypted.read()
    feed(client, flight[: len(flight) // 2], chunking)
    assert client.state is PairState.HANDSHAKING
    with pytest.raises(RaggedEOFError, match="during the TLS handshake"):
        client.encrypted.write(b"")


def connected(make_pair_link: Any, **kwargs: Any) -> Any:
    client, server, link = make_pair_link(**kwargs)
    link.handshake()
    drain(client)
    drain(server)
    return client, server, link


@pytest.mark.parametrize("where", ["first body byte", "middle", "last byte (tag)"])
def test_flipped_bit_in_ciphertext(
    make_pair_link: Any, chunking: Chunking, tls_version: str, where: str
) -> None:
    client, server, _link = connected(make_pair_link)
    client.cleartext.write(b"an honest message")
    record = bytearray(client.encrypted.read())
    index = {"first body byte": 5, "middle": len(record) // 2, "last byte (tag)": -1}[where]
    record[index] ^= 0x10
    error = feed_until_error(server, bytes(record), chunking)
    assert type(error) is TLSError
    assert error.alert == "bad_record_mac"
    assert error.alert_sent is True
    assert error.library == "SSL"
    assert error.reason == "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
    assert server.cleartext.read() == b"", "nothing of a forged record is delivered"
    assert_failed_for_good(server, error)
    alert = server.encrypted.read()
    assert alert
    received = feed_until_error(client, alert, chunking)
    assert isinstance(received, TLSAlertReceivedError)
    assert received.alert == "bad_record_mac"


@examples(dev=60)
@given(bit=st.integers(0, 10**6), size=st.integers(1, 2000))
def test_any_flipped_bit_after_handshake(make_pair_link: Any, bit: int, size: int) -> None:
    """Any bit flipped anywhere in a record (header included) ends in a
    typed error or in waiting for more bytes, never in different data."""
    client, server, _link = connected(make_pair_link)
    message = payload(size)
    client.cleartext.write(message)
    record = bytearray(client.encrypted.read())
    bit %= len(record) * 8
    record[bit // 8] ^= 1 << (bit % 8)
    try:
        feed(server, bytes(record))
    except (TLSError, RemoteProtocolError) as exc:
        assert server.state is PairState.ERROR
        assert not isinstance(exc, LocalProtocolError)
    else:
        # A longer length field: the record is not complete yet.
        assert bit // 8 in (3, 4)
        assert server.state is PairState.OPEN
    assert server.cleartext.read() == b""


def record_version_offsets(stream: bytes) -> set[int]:
    """Offsets of the legacy-version bytes of each record header."""
    offsets = set()
    pos = 0
    while pos + 5 <= len(stream):
        offsets.update((pos + 1, pos + 2))
        pos += 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
    return offsets


@examples(dev=60)
@given(bit=st.integers(0, 10**6))
def test_any_flipped_bit_in_server_flight(make_pair_link: Any, bit: int) -> None:
    """A flipped bit in the server's handshake flight fails the handshake
    (typed) or leaves the client waiting for bytes that never come.  Only
    the record headers' legacy version is outside the transcript the
    Finished messages check, so only there may a flip pass unnoticed."""
    client, server, _ = make_pair_link()
    feed(server, client.encrypted.read())
    flight = bytearray(server.encrypted.read())
    bit %= len(flight) * 8
    harmless = bit // 8 in record_version_offsets(bytes(flight))
    flight[bit // 8] ^= 1 << (bit % 8)
    try:
        feed(client, bytes(flight))
        # The client may think it is done: the server must then agree.
        feed(server, client.encrypted.read())
    except SecurePairError as exc:
        assert not isinstance(exc, LocalProtocolError)
        return
    if server.handshake_complete:
        assert harmless, f"flipping bit {bit} went unnoticed"
        feed(client, server.encrypted.read())
        assert transfer_ok(client, server)


def transfer_ok(client: SecurePair, server: SecurePair) -> bool:
    client.cleartext.write(b"still the same keys")
    feed(server, client.encrypted.read())
    return server.cleartext.read() == b"still the same keys"


# --------------------------------------------------------------------------
# Not TLS at all.

SSLV2_HELLO = bytes.fromhex("802b0103010012000000100000390000380000350000160000130000")

NOT_TLS = {
    "HTTP to a server": (
        "server",
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "http-request",
        "peer sent plaintext, looks like HTTP: b'GET / HTTP/1.1\\r\\n'",
    ),
    "SMTP banner to a client": (
        "client",
        b"220 mail.example.com ESMTP\r\n",
        "smtp",
        "peer sent plaintext, looks like SMTP: b'220 mail.example.com ESMTP\\r\\n'",
    ),
    "HTTP response to a client": (
        "client",
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
        "http-response",
        "looks like an HTTP response: b'HTTP/1.1 400 Bad Request\\r\\n'",
    ),
    "SSLv2 hello": ("server", SSLV2_HELLO, "sslv2", "SSL 2.0 ClientHello"),
    "PROXY v1": (
        "server",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 5 443\r\n\x16\x03\x01",
        "proxy-v1",
        "PROXY protocol v1 header before TLS",
    ),
    "PROXY v2": (
        "server",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12),
        "proxy-v2",
        "PROXY protocol v2 header",
    ),
}


@pytest.mark.parametrize("case", list(NOT_TLS))
def test_not_tls(make_pair_link: Any, tls_version: str, case: str) -> None:
    role, data, kind, message = NOT_TLS[case]
    client, server, _ = make_pair_link()
    pair = server if role == "server" else client
    if role == "server":
        client.encrypted.read()
    else:
        client.encrypted.read()  # the ClientHello went out; this came back
    with pytest.raises(NotTLSError) as caught:
        pair.encrypted.write(data)
    error = caught.value
    assert isinstance(error, RemoteProtocolError)
    assert error.kind == kind
    assert message in str(error)
    assert error.first_bytes == data[:32]
    assert pair.state is PairState.ERROR
    # None of it was TLS: all of it is handed back.
    assert pair.bytes_received == len(data)
    assert pair.trailing_data == data
    # If TLS said it sent an alert, it is there to send.
    cause = error.__cause__
    wire = pair.encrypted.read()
    if isinstance(cause, TLSError) and cause.alert_sent:
        assert wire, f"{cause} claims an alert but none is on the encrypted side"
    assert_failed_for_good(pair, error)


@pytest.mark.parametrize("case", ["HTTP to a server", "SMTP banner to a client"])
def test_not_tls_byte_by_byte(make_pair_link: Any, case: str) -> None:
    """Byte by byte, the first byte already proves it is not TLS."""
    role, data, _, _ = NOT_TLS[case]
    client, server, _ = make_pair_link()
    pair = server if role == "server" else client
    error = feed_until_error(pair, data, byte_by_byte)
    assert isinstance(error, NotTLSError)
    assert data.startswith(error.first_bytes)
    assert repr(error.first_bytes) in str(error)
    assert pair.trailing_data == error.first_bytes


def test_tls_start_then_garbage(make_pair_link: Any, chunking: Chunking) -> None:
    """Two bytes that look like TLS, then nonsense: OpenSSL's typed error."""
    _client, server, _ = make_pair_link()
    error = feed_until_error(server, b"\x16\x03" + b"\xff" * 200, chunking)
    assert isinstance(error, TLSError)
    assert error.reason


# --------------------------------------------------------------------------
# A flood of garbage: typed error, bounded memory, bounded time.

FLOOD = 20 * 1024 * 1024


def flood(prefix: bytes, seed: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    rng = random.Random(seed)
    sent = 0
    first = True
    while sent < FLOOD:
        piece = rng.randbytes(chunk)
        if first:
            piece = prefix + piece[len(prefix) :]
            first = False
        sent += len(piece)
        yield piece


def app_data_records(seed: int) -> Iterator[bytes]:
    """Well-framed application-data records with random contents."""
    rng = random.Random(seed)
    sent = 0
    while sent < FLOOD:
        body = rng.randbytes(16384 + 17)
        record = b"\x17\x03\x03" + len(body).to_bytes(2, "big") + body
        sent += len(record)
        yield record


@pytest.mark.parametrize("kind", ["random", "tls-looking", "after handshake", "records"])
def test_garbage_flood(make_pair_link: Any, kind: str) -> None:
    limit = MIN_BUFFER_LIMIT
    opts = {"buffer_limit": limit}
    client, server, link = make_pair_link(client_opts=opts, server_opts=opts)
    if kind in ("after handshake", "records"):
        link.handshake()
    else:
        client.encrypted.read()
    source = {
        "random": flood(b"", 1),
        "tls-looking": flood(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 2),
        "after handshake": flood(b"", 3),
        "records": app_data_records(4),
    }[kind]
    tracemalloc.start()
    started = time.perf_counter()
    fed = 0
    error: SecurePairError | None = None
    try:
        for piece in source:
            view = memoryview(piece)
            try:
                while view:
                    taken = server.encrypted.write(view)
                    fed += taken
                    view = view[taken:]
            except SecurePairError as exc:
                error = exc
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert error is not None, "20 MB of garbage raised nothing"
    assert isinstance(error, TLSError | RemoteProtocolError), repr(error)
    assert not isinstance(error, LocalProtocolError)
    assert server.state is PairState.ERROR
    assert fed <= 4 * limit, "the error came early"
    assert len(server.trailing_data) <= limit
    # The write that failed took some bytes too; bytes_received says how many.
    assert fed <= server.bytes_received <= fed + 65536
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"
    assert elapsed < 5
    # The driver that ignores the error is refused at once, not buffered.
    received = server.bytes_received
    with pytest.raises(LocalProtocolError):
        server.encrypted.write(b"\x00" * 65536)
    assert server.bytes_received == received


@pytest.mark.parametrize("prefix", [b"", b"\x16\x03\x01\x40\x00"])
def test_garbage_in_one_write(make_pair_link: Any, prefix: bytes) -> None:
    """One 20 MB write: the pair takes at most its limit, then fails."""
    limit = MIN_BUFFER_LIMIT
    _client, server, _ = make_pair_link(server_opts={"buffer_limit": limit})
    data = prefix + random.Random(5).randbytes(FLOOD)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SecurePairError) as caught:
            while True:
                server.encrypted.write(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not isinstance(caught.value, LocalProtocolError) or isinstance(
        caught.value.__cause__, TLSError
    )
    assert server.state is PairState.ERROR
    assert server.bytes_received <= limit
    assert len(server.trailing_data) <= limit
    assert (
        data.startswith(server.trailing_data)
        or data.endswith(server.trailing_data)
        or server.trailing_data in data[: server.bytes_received]
    )
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"
    assert time.perf_counter() - started < 2


# --------------------------------------------------------------------------
# Every byte accounted for.


def test_bytes_accounted_after_close(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    transfer(link, server, payload(40000))
    server.close()
    trailing = b"* OK plaintext from here on\r\n"
    tls = server.encrypted.read()
    feed(client, tls + trailing, chunking)
    assert client.trailing_data == trailing
    assert client.bytes_received == len(link.server_to_client) + len(tls) + len(trailing)
    consumed = client.bytes_received - len(client.trailing_data)
    assert consumed == len(link.server_to_client) + len(tls)


def test_bytes_accounted_after_error(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, _link = connected(make_pair_link, chunking=chunking)
    client.cleartext.write(b"good")
    good = client.encrypted.read()
    client.cleartext.write(b"bad!")
    bad = bytearray(client.encrypted.read())
    bad[-1] ^= 1
    after = b"\x17\x03\x03\x00\x05hello" * 3
    fed = good + bytes(bad) + after
    before = server.bytes_received
    error = feed_until_error(server, fed, chunking)
    assert isinstance(error, TLSError)
    assert server.cleartext.read() == b"good"
    # What TLS consumed is a prefix, what it did not is trailing data: they
    # add up to every byte the pair took, in order.
    taken = server.bytes_received - before
    assert taken <= len(fed)
    trailing = server.trailing_data
    assert fed[:taken].endswith(trailing)
    assert taken - len(trailing) >= len(good)


@examples(dev=40)
@given(
    sizes=st.lists(st.integers(1, 5000), max_size=4),
    trailing=st.binary(max_size=500),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=8),
)
def test_bytes_accounted_any_conversation(
    make_pair_link: Any, sizes: list[int], trailing: bytes, cuts: list[int]
) -> None:
    chunking = fixed_cuts(cuts)
    client, server, link = connected(make_pair_link, chunking=chunking)
    for size in sizes:
        assert transfer(link, server, payload(size)) == payload(size)
    server.close()
    tls = server.encrypted.read()
    feed(client, tls + trailing, chunking)
    assert client.bytes_received == len(link.server_to_client) + len(tls) + len(trailing)
    assert client.trailing_data == trailing
    assert client.unwrap() == trailing


def test_handshake_event_not_sent_on_failure(make_pair_link: Any, certs: Certs) -> None:
    client, server, _ = make_pair_link(server_opts={"identity": certs.expired})
    feed(server, client.encrypted.read())
    feed_until_error(client, server.encrypted.read(), whole)
    assert not of_type(drain(client), HandshakeComplete)


def test_bad_record_behind_unread_data(make_pair_link: Any) -> None:
    """A forged record behind data the application has not read yet: the
    good bytes before it are all delivered, then the error, with its alert
    ready to send."""
    limit = MIN_BUFFER_LIMIT
    client, server, _link = connected(make_pair_link, client_opts={"buffer_limit": limit})
    good = payload(4 * 16384)
    server.cleartext.write(good)
    wire = server.encrypted.read()
    server.cleartext.write(b"forged")
    bad = bytearray(server.encrypted.read())
    bad[-1] ^= 1
    taken = feed(client, wire + bytes(bad))
    assert taken == len(wire) + len(bad), "the backpressure was not reached"
    received = bytearray()
    with pytest.raises(TLSError) as caught:
        for _ in range(100):
            received += client.cleartext.read()
    assert received == good
    assert caught.value.alert == "bad_record_mac"
    assert client.encrypted.pending, "the alert is there to send"
    assert client.cleartext.read() == b""


@pytest.mark.parametrize("failure", ["ragged EOF", "bad record"])
def test_details_after_a_failure(make_pair_link: Any, tls_version: str, failure: str) -> None:
    """What the handshake settled stays known after the connection fails
    (OpenSSL itself stops answering: the stdlib raises ValueError)."""
    client, server, link = make_pair_link(
        client_opts={"alpn_protocols": ["h2"]}, server_opts={"alpn_protocols": ["h2"]}
    )
    link.handshake()
    before = {
        name: getattr(client, name)
        for name in ("version", "cipher", "alpn_protocol", "server_name", "authorized")
    }
    der = client.peer_certificate_der()
    with pytest.raises(SecurePairError):
        if failure == "ragged EOF":
            client.encrypted.write(b"")
        else:
            server.cleartext.write(b"x")
            record = bytearray(server.encrypted.read())
            record[-1] ^= 1
            client.encrypted.write(bytes(record))
    assert client.state is PairState.ERROR
    for name, value in before.items():
        assert getattr(client, name) == value, name
    assert client.version == tls_version
    assert client.authorization_error is None
    assert client.peer_certificate_der() == der
    cert = client.peer_certificate()
    assert cert is not None and cert["raw"] == der
    assert client.cipher_info()[0] == before["cipher"]
