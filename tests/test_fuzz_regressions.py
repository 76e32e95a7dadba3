"""Regression tests for what the fuzzers and the tamper tests found.

Each test names the finding and the input that showed it; the raw crash
inputs are also kept in ``fuzz/regressions/`` and replayed through their
harness by ``tests/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from securepair import PairState, SecurePair, TLSConfig
from securepair.alerts import received_alert, sent_alert_for_reason
from securepair.errors import ClientHelloError, RecordError, TLSAlertReceivedError, TLSError
from securepair.events import AlertSent
from securepair.testing import Link, TamperLink, TamperPlan
from securepair.testing.tamper import SERVER_TO_CLIENT, FlipBits, Inject, Tamper, record

from .fixtures_engine import DEFAULT_HOSTNAME, Certs

BACKENDS = ("stdlib", "pyopenssl")
VERSIONS = ("TLSv1.2", "TLSv1.3")
GARBAGE_RECORD = b"\x17\x03\x03\x00\x20" + bytes(32)


def connected(
    certs: Certs, backend: str, version: str, plan: TamperPlan | None = None
) -> tuple[SecurePair, SecurePair, Link]:
    common: dict[str, Any] = {"backend": backend, "min_version": version, "max_version": version}
    server = SecurePair(TLSConfig(**certs.ecdsa.options(), **common), server_side=True)
    client = SecurePair(
        TLSConfig(ca=certs.ca_pem, **common), server_side=False, server_hostname=DEFAULT_HOSTNAME
    )
    link: Link = Link(client, server) if plan is None else TamperLink(client, server)
    link.handshake()
    if plan is not None:
        assert isinstance(link, TamperLink)
        link.arm(plan)
    return client, server, link


def test_buffer_can_be_resized_while_handling_a_framer_error(framer: ModuleType) -> None:
    """tests/test_tamper.py (a TamperLink dropping records ahead of a
    non-TLS stream): inside ``except RecordError as e:``, resizing the
    bytearray that was scanned raised BufferError ("Existing exports of
    data"): the error's traceback kept the framer's frame, and with it its
    export of the buffer, alive.  Both framers (the ``framer`` fixture),
    both functions."""
    good = b"\x16\x03\x01\x00\x01\x01"
    for function in (framer.scan, framer.parse_client_hello):
        buf = bytearray(good + b"\xff\x03\x03\x00\x01\x00")
        try:
            function(buf)
        except RecordError as e:
            assert e.offset == len(good)
            del buf[: e.offset]  # what a stream reader does with the good part
        else:
            raise AssertionError("no RecordError")
        assert buf.startswith(b"\xff")
    buf = bytearray(b"\x15\x03\x03\x00\x02\x02\x28")
    with pytest.raises(ClientHelloError):
        try:
            framer.parse_client_hello(buf)
        except ClientHelloError:
            buf.clear()
            raise
    assert not buf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("how", ["close", "unwrap"])
def test_no_alert_claimed_after_our_close_notify(
    certs: Certs, backend: str, version: str, how: str
) -> None:
    """fuzz_pair (fuzz/regressions/pair-alert-claimed-after-close-notify):
    after close() or unwrap(), a bad record failed the pair with "(sent
    bad_record_mac alert)", alert_sent=True and an AlertSent event, but
    OpenSSL sends no alert once close_notify is out: nothing was on the
    encrypted side.  An error must not claim an alert that was not sent."""
    _, server, _ = connected(certs, backend, version)
    getattr(server, how)()
    server.encrypted.read()  # the close_notify went out
    list(server.events())
    with pytest.raises(TLSError) as caught:
        server.encrypted.write(GARBAGE_RECORD)
    error = caught.value
    assert server.encrypted.read() == b""
    assert not error.alert_sent and error.alert is None, error
    assert "sent" not in str(error)
    assert not any(isinstance(e, AlertSent) for e in server.events())
    assert server.state is PairState.ERROR


@pytest.mark.parametrize("version", VERSIONS)
def test_alert_is_still_claimed_when_sent(certs: Certs, version: str) -> None:
    """The other side of the fix: without a close, the alert is sent and said."""
    for backend in BACKENDS:
        _, server, _ = connected(certs, backend, version)
        with pytest.raises(TLSError) as caught:
            server.encrypted.write(GARBAGE_RECORD)
        assert caught.value.alert == "bad_record_mac" and caught.value.alert_sent
        assert server.encrypted.read()


@pytest.mark.parametrize("version", VERSIONS)
def test_pyopenssl_received_alert_is_typed(certs: Certs, version: str) -> None:
    """tests/test_tamper.py: with pyOpenSSL's OpenSSL 4, a fatal alert from
    the peer came up as a plain TLSError ("TLS_ALERT_BAD_RECORD_MAC") with
    no alert, not TLSAlertReceivedError: OpenSSL 4 names received alerts
    TLS_ALERT_*, which alerts.received_alert did not know."""
    assert received_alert("TLS_ALERT_BAD_RECORD_MAC") == "bad_record_mac"
    assert received_alert("SSLV3_ALERT_BAD_RECORD_MAC") == "bad_record_mac"
    plan = TamperPlan.of(Tamper(FlipBits(-1), SERVER_TO_CLIENT, 0))
    _, server, link = connected(certs, "pyopenssl", version, plan)
    server.cleartext.write(b"data")
    assert isinstance(link, TamperLink)
    outcome = link.settle()
    assert isinstance(outcome.server, TLSAlertReceivedError), outcome
    assert outcome.server.alert == "bad_record_mac"


def test_stdlib_bad_record_type_names_its_alert(certs: Certs) -> None:
    """tests/test_tamper.py: a record of a type TLS 1.3 refuses after the
    handshake (BAD_RECORD_TYPE) sent unexpected_message, but the stdlib
    backend's error said no alert was sent."""
    assert sent_alert_for_reason("BAD_RECORD_TYPE") == "unexpected_message"
    plan = TamperPlan.of(Tamper(Inject(record(22, b"\x04\x00\x00\x00")), SERVER_TO_CLIENT, 0))
    _, server, link = connected(certs, "stdlib", "TLSv1.3", plan)
    server.cleartext.write(b"data")
    assert isinstance(link, TamperLink)
    outcome = link.settle()
    assert isinstance(outcome.client, TLSError), outcome
    assert outcome.client.alert == "unexpected_message" and outcome.client.alert_sent
    assert isinstance(outcome.server, TLSAlertReceivedError)
    assert outcome.server.alert == "unexpected_message"


def test_stdlib_internal_error_has_a_message(certs: Certs) -> None:
    """tests/test_tamper.py: OpenSSL 3.0 fails a short TLS 1.2 AEAD record
    with "internal error", a reason the ssl module has no name for; the
    error read "TLS failed: SSL: None" and claimed no alert, though
    internal_error was sent."""
    plan = TamperPlan.of(Tamper(Inject(record(21, b"\x02\x28")), SERVER_TO_CLIENT, 0))
    _, server, link = connected(certs, "stdlib", "TLSv1.2", plan)
    server.cleartext.write(b"data")
    assert isinstance(link, TamperLink)
    outcome = link.settle()
    assert isinstance(outcome.client, TLSError), outcome
    assert "None" not in str(outcome.client), outcome.client
    if outcome.client.reason == "INTERNAL_ERROR":  # OpenSSL 3.0; others may differ
        assert outcome.client.alert == "internal_error" and outcome.client.alert_sent
        assert isinstance(outcome.server, TLSAlertReceivedError)
        assert outcome.server.alert == "internal_error"
