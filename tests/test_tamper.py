"""The tamper link's own tests: each tampering gives the typed error it should.

Every case runs on both backends and both protocol versions.  A case states
what the receiving pair must raise (the error type and the alert it sends:
bad_record_mac, unexpected_message, decode_error, record_overflow...), and
that the alert goes back: the sender then raises TLSAlertReceivedError with
the same alert.  Where OpenSSL versions differ in the alert they choose
(the stdlib links the system's OpenSSL, pyOpenSSL its own), the case names
the set of alerts a conforming implementation may send.  Nothing hangs:
settle() stops when the link is quiet, and pytest's timeout guards the rest.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from securepair import PairState, SecurePair, TLSConfig
from securepair.errors import (
    NotTLSError,
    RaggedEOFError,
    SecurePairError,
    TLSAlertReceivedError,
    TLSError,
)
from securepair.testing import byte_by_byte, random_chunks, whole
from securepair.testing.tamper import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Action,
    Delay,
    Drop,
    Duplicate,
    FlipBits,
    Inject,
    Reorder,
    Replace,
    Tamper,
    TamperLink,
    TamperPlan,
    Truncate,
    alert_record,
    record,
)

from .fixtures_engine import DEFAULT_HOSTNAME, Certs

BACKENDS = ("stdlib", "pyopenssl")
VERSIONS = ("TLSv1.2", "TLSv1.3")

#: Offset of the session id length in a record carrying a Client/ServerHello:
#: record header (5), handshake header (4), version (2), random (32).
SESSION_ID_LENGTH = 43


@pytest.fixture(scope="module", params=[(b, v) for b in BACKENDS for v in VERSIONS], ids=str)
def configs(request: pytest.FixtureRequest, certs: Certs) -> tuple[TLSConfig, TLSConfig]:
    backend, version = request.param
    common: dict[str, Any] = {"backend": backend, "min_version": version, "max_version": version}
    client = TLSConfig(ca=certs.ca_pem, **common)
    server = TLSConfig(**certs.ecdsa.options(), **common)
    return client, server


def make_link(
    configs: tuple[TLSConfig, TLSConfig], *tampers: Tamper, chunking: Any = whole
) -> TamperLink:
    client_config, server_config = configs
    server = SecurePair(server_config, server_side=True)
    client = SecurePair(client_config, server_side=False, server_hostname=DEFAULT_HOSTNAME)
    return TamperLink(client, server, TamperPlan.of(*tampers), chunking)


def after_handshake(
    configs: tuple[TLSConfig, TLSConfig], *tampers: Tamper, chunking: Any = whole
) -> TamperLink:
    """A connected link that tampers only with what is sent from now on."""
    link = make_link(configs, chunking=chunking)
    link.handshake()
    link.arm(TamperPlan.of(*tampers))
    return link


def check_failed(
    receiver: SecurePair,
    error: SecurePairError | None,
    sender: SecurePair,
    sender_error: SecurePairError | None,
    alerts: set[str],
) -> None:
    """``receiver`` failed with one of ``alerts``, sent it, and the sender
    received it."""
    assert isinstance(error, TLSError) and not isinstance(error, TLSAlertReceivedError), error
    assert error.alert in alerts, error
    assert error.alert_sent, error
    assert receiver.state is PairState.ERROR
    assert isinstance(sender_error, TLSAlertReceivedError), sender_error
    assert sender_error.alert == error.alert, (sender_error, error)
    assert sender.state is PairState.ERROR


def server_sends(link: TamperLink, *messages: bytes) -> None:
    for message in messages:
        link.server.cleartext.write(message)
        link.pump()


# --------------------------------------------------------------------------
# After the handshake: records the receiver must refuse.

POST_HANDSHAKE = {
    "flip a bit in the body": (FlipBits(offset=-1), {"bad_record_mac"}),
    "flip a bit in the first body byte": (FlipBits(offset=5, mask=0x10), {"bad_record_mac"}),
    "duplicate (replay)": (Duplicate(), {"bad_record_mac"}),
    "drop one record": (Drop(), {"bad_record_mac"}),
    "reorder two records": (Reorder(), {"bad_record_mac"}),
    "delay until the end": (Delay(records=None), {"bad_record_mac"}),
    "replace with garbage of the same kind": (
        Replace(record(23, b"\x00" * 40)),
        {"bad_record_mac"},
    ),
    # OpenSSL 3.0's TLS 1.2 answers a short AEAD record with internal_error.
    "truncate, length fixed": (
        Truncate(keep=3),
        {"bad_record_mac", "decode_error", "internal_error"},
    ),
    "length over the limit": (FlipBits(offset=3, mask=0x80), {"record_overflow"}),
    "version major not 3": (FlipBits(offset=1, mask=0x01), {"protocol_version", "decode_error"}),
    "content type out of range": (
        FlipBits(offset=0, mask=0x80),
        {"unexpected_message", "bad_record_mac"},
    ),
}


@pytest.mark.parametrize("case", list(POST_HANDSHAKE))
def test_post_handshake_tampering(configs: tuple[TLSConfig, TLSConfig], case: str) -> None:
    action, alerts = POST_HANDSHAKE[case]
    link = after_handshake(configs, Tamper(action, SERVER_TO_CLIENT, 0))
    link.server.cleartext.write(b"first")
    outcome = link.settle()
    if outcome.client is None:
        # Dropped, held back or reordered: only the next record shows it.
        link.server.cleartext.write(b"second")
        outcome = link.settle()
    check_failed(link.client, outcome.client, link.server, outcome.server, alerts)
    # No tampered byte ever became cleartext.
    assert link.client.cleartext.read() in (b"", b"first")
    assert [a.record_index for a in link.applied] == [0]


@pytest.mark.parametrize("chunking", [whole, byte_by_byte, random_chunks(7)], ids=str)
def test_result_does_not_depend_on_chunking(
    configs: tuple[TLSConfig, TLSConfig], chunking: Any
) -> None:
    link = after_handshake(configs, Tamper(FlipBits(-1), SERVER_TO_CLIENT, 1), chunking=chunking)
    server_sends(link, b"a" * 100)
    link.server.cleartext.write(b"b" * 3000)
    outcome = link.settle()
    check_failed(link.client, outcome.client, link.server, outcome.server, {"bad_record_mac"})
    assert link.client.cleartext.read() == b"a" * 100


def test_unexpected_plaintext_handshake_record(configs: tuple[TLSConfig, TLSConfig]) -> None:
    """A plaintext handshake record once encryption is on: TLS 1.3 refuses
    its type (unexpected_message); TLS 1.2 cannot tell it from a bad
    ciphertext record."""
    hello_request = record(22, b"\x00\x00\x00\x00")
    link = after_handshake(configs, Tamper(Inject(hello_request), SERVER_TO_CLIENT, 0))
    link.server.cleartext.write(b"data")
    outcome = link.settle()
    if configs[0].max_version == "TLSv1.3":
        check_failed(
            link.client, outcome.client, link.server, outcome.server, {"unexpected_message"}
        )
    else:
        assert isinstance(outcome.client, TLSError), outcome
        assert isinstance(outcome.server, TLSAlertReceivedError), outcome


def test_truncated_record_then_eof(configs: tuple[TLSConfig, TLSConfig]) -> None:
    """The header promises more than arrives, then the transport ends: a
    ragged EOF in the middle of a record, never cleartext."""
    link = after_handshake(configs, Tamper(Truncate(keep=4, fix_length=False), SERVER_TO_CLIENT))
    link.server.cleartext.write(b"x" * 50)
    assert link.settle() == (None, None)
    assert link.client.state is PairState.OPEN
    error = link.eof("client")
    assert isinstance(error, RaggedEOFError), error
    assert "middle of a TLS record" in str(error)
    assert link.client.cleartext.read() == b""


# --------------------------------------------------------------------------
# During the handshake.


def test_malformed_client_hello_is_decode_error(configs: tuple[TLSConfig, TLSConfig]) -> None:
    # A session id longer than 32 bytes.
    link = make_link(configs, Tamper(FlipBits(SESSION_ID_LENGTH, 0x80), CLIENT_TO_SERVER, 0))
    outcome = link.settle()
    check_failed(link.server, outcome.server, link.client, outcome.client, {"decode_error"})


def test_truncated_server_hello(configs: tuple[TLSConfig, TLSConfig]) -> None:
    link = make_link(configs, Tamper(Truncate(keep=30), SERVER_TO_CLIENT, 0))
    outcome = link.settle()
    check_failed(
        link.client,
        outcome.client,
        link.server,
        outcome.server,
        {"decode_error", "unexpected_message"},
    )


def test_injected_alert_is_received(configs: tuple[TLSConfig, TLSConfig]) -> None:
    alert = alert_record("handshake_failure")
    link = make_link(configs, Tamper(Inject(alert), SERVER_TO_CLIENT, 0))
    outcome = link.settle()
    assert isinstance(outcome.client, TLSAlertReceivedError), outcome
    assert outcome.client.alert == "handshake_failure"
    assert outcome.server is None and link.server.state is PairState.HANDSHAKING


@pytest.mark.parametrize(
    "injected",
    [record(23, b"early data"), record(20, b"\x01"), record(24, b"\x01\x00\x10" + b"h" * 32)],
    ids=["application_data", "change_cipher_spec", "heartbeat"],
)
def test_record_before_server_hello_is_unexpected(
    configs: tuple[TLSConfig, TLSConfig], injected: bytes
) -> None:
    link = make_link(configs, Tamper(Inject(injected), SERVER_TO_CLIENT, 0))
    outcome = link.settle()
    assert isinstance(outcome.client, TLSError), outcome
    assert outcome.client.alert == "unexpected_message" and outcome.client.alert_sent
    # The alert went back; the server, still waiting for the client's
    # second flight, fails typed (it may not read the alert as one: its
    # record version is the client's initial one).
    assert isinstance(outcome.server, TLSError), outcome


def test_oversized_handshake_record(configs: tuple[TLSConfig, TLSConfig]) -> None:
    big = record(22, b"\x02" + b"\x00" * 20000)
    link = make_link(configs, Tamper(Inject(big), SERVER_TO_CLIENT, 0))
    outcome = link.settle()
    assert isinstance(outcome.client, TLSError), outcome
    assert outcome.client.alert == "record_overflow" and outcome.client.alert_sent


def test_not_tls_at_all(configs: tuple[TLSConfig, TLSConfig]) -> None:
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    link = make_link(configs, Tamper(Replace(request), CLIENT_TO_SERVER, 0))
    outcome = link.settle()
    assert isinstance(outcome.server, NotTLSError), outcome
    assert outcome.server.kind == "http-request"
    # Nothing of it was TLS, so all of it is handed back.
    assert link.server.trailing_data == request


def test_lost_client_hello_stalls_then_eof(configs: tuple[TLSConfig, TLSConfig]) -> None:
    """Nothing hangs: a lost flight leaves both pairs waiting, the link
    quiet; the transport's end is then a typed error on each side."""
    link = make_link(configs, Tamper(Drop(), CLIENT_TO_SERVER, 0))
    assert link.settle() == (None, None)
    assert link.client.state is PairState.HANDSHAKING
    assert link.server.state is PairState.HANDSHAKING
    assert isinstance(link.eof("client"), RaggedEOFError)
    assert isinstance(link.eof("server"), RaggedEOFError)


def test_no_plan_is_a_plain_link(configs: tuple[TLSConfig, TLSConfig]) -> None:
    link = make_link(configs, chunking=random_chunks(3))
    link.handshake()
    server_sends(link, b"hello" * 1000)
    assert link.client.cleartext.read() == b"hello" * 1000
    assert link.delivered_to_client == link.server_to_client
    assert link.applied == []


# --------------------------------------------------------------------------
# Plans from seeds.


def test_random_plan_is_deterministic() -> None:
    assert TamperPlan.random(5, count=4) == TamperPlan.random(5, count=4)
    assert TamperPlan.random(5, count=4) != TamperPlan.random(6, count=4)


@pytest.mark.parametrize("seed", range(12))
def test_random_plans_end_typed_and_replay(configs: tuple[TLSConfig, TLSConfig], seed: int) -> None:
    """Whatever a seeded plan does, each pair ends connected or with a typed
    error, and the same seed meets the same records again."""
    plan = TamperPlan.random(seed, count=2, max_index=8)
    runs = []
    for _ in range(2):
        link = make_link(configs, *plan.tampers)
        outcome = link.settle()
        if link.client.handshake_complete and link.client.state is PairState.OPEN:
            # The server may have failed already (typed).
            with contextlib.suppress(SecurePairError):
                link.server.cleartext.write(b"after")
            outcome = link.settle()
        for error in outcome:
            assert error is None or isinstance(error, SecurePairError)
        runs.append([(a.direction, a.record_index, a.action) for a in link.applied])
    assert runs[0] == runs[1]


def test_tamper_validates() -> None:
    with pytest.raises(ValueError, match="direction"):
        Tamper(Drop(), "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index"):
        Tamper(Drop(), CLIENT_TO_SERVER, -1)
    with pytest.raises(ValueError, match="mask"):
        FlipBits(0, 0)
    with pytest.raises(ValueError, match="records"):
        Delay(records=0)
    with pytest.raises(ValueError, match="times"):
        Duplicate(times=0)
    assert alert_record("bad_record_mac") == b"\x15\x03\x03\x00\x02\x02\x14"
    assert alert_record(0, fatal=False) == b"\x15\x03\x03\x00\x02\x01\x00"


# --------------------------------------------------------------------------
# The link's mechanics, on stand-in pairs that only move bytes.


class _Side:
    def __init__(self) -> None:
        self.outbox = bytearray()
        self.inbox = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = bytes(self.outbox)
        self.outbox.clear()
        return data

    def write(self, data: Any) -> int:
        self.inbox += data
        return len(data)


class _Stub:
    """Enough of a SecurePair for the link: an encrypted side."""

    def __init__(self) -> None:
        self.encrypted = _Side()


def stub_link(*tampers: Tamper, chunking: Any = whole) -> tuple[_Stub, _Stub, TamperLink]:
    client, server = _Stub(), _Stub()
    link = TamperLink(client, server, TamperPlan.of(*tampers), chunking)  # type: ignore[arg-type]
    return client, server, link


R = [record(23, bytes([i]) * (i + 1)) for i in range(5)]


def send(client: _Stub, link: TamperLink, *records: bytes) -> bytes:
    client.encrypted.outbox += b"".join(records)
    link.pump()
    return bytes(link.server.encrypted.inbox)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Drop(), R[0] + R[2]),
        (Duplicate(times=2), R[0] + R[1] * 3 + R[2]),
        (Truncate(keep=1), R[0] + record(23, b"\x01") + R[2]),
        (Truncate(keep=1, fix_length=False), R[0] + R[1][:6] + R[2]),
        (Reorder(), R[0] + R[2] + R[1]),
        (Delay(records=2), R[0] + R[2] + R[3] + R[1]),
        (FlipBits(offset=-1, mask=0xFF), R[0] + R[1][:-1] + b"\xfe" + R[2]),
        (FlipBits(offset=len(R[1]), mask=0x01), R[0] + b"\x16" + R[1][1:] + R[2]),
        (Inject(b"XY"), R[0] + b"XY" + R[1] + R[2]),
        (Inject(b"XY", after=True), R[0] + R[1] + b"XY" + R[2]),
        (Replace(b"Z"), R[0] + b"Z" + R[2]),
    ],
    ids=lambda v: repr(v) if isinstance(v, Action) else "",
)
def test_actions_on_the_wire(action: Action, expected: bytes) -> None:
    client, _, link = stub_link(Tamper(action, CLIENT_TO_SERVER, index=1))
    delivered = send(client, link, R[0], R[1], R[2], *([R[3]] if isinstance(action, Delay) else []))
    assert delivered == expected
    assert [(a.record_index, a.action) for a in link.applied] == [(1, action)]


def test_records_cut_across_reads_are_framed() -> None:
    client, server, link = stub_link(Tamper(Drop(), CLIENT_TO_SERVER, index=2))
    wire = b"".join(R)
    for i in range(len(wire)):  # the sender's bytes leave one at a time
        client.encrypted.outbox += wire[i : i + 1]
        link.pump()
    assert bytes(server.encrypted.inbox) == R[0] + R[1] + R[3] + R[4]


def test_content_type_filter_and_arm() -> None:
    hs = record(22, b"\x01\x00\x00\x00")
    client, server, link = stub_link(Tamper(Drop(), CLIENT_TO_SERVER, index=1, content_type=22))
    assert send(client, link, hs, R[0], hs, R[1]) == hs + R[0] + R[1]
    link.arm([Tamper(Drop(), CLIENT_TO_SERVER, index=0)])  # counts from 0 again
    server.encrypted.inbox.clear()
    assert send(client, link, R[2], R[3]) == R[3]


def test_held_records_wait_for_flush() -> None:
    client, server, link = stub_link(Tamper(Delay(records=None), CLIENT_TO_SERVER, index=0))
    assert send(client, link, R[0], R[1]) == R[1]
    assert link.settle() == (None, None)  # settling does not release it
    assert link.flush() == len(R[0])
    assert bytes(server.encrypted.inbox) == R[1] + R[0]


def test_not_records_pass_through() -> None:
    client, _, link = stub_link(Tamper(Drop(), CLIENT_TO_SERVER, index=3))
    garbage = b"GET / HTTP/1.1\r\n\r\n"
    assert send(client, link, R[0], garbage) == R[0] + garbage
    assert send(client, link, R[1]) == R[0] + garbage + R[1]  # raw from now on
    assert link.applied == []
