"""FTP AUTH TLS: multi-line replies, refusals, 530/503 before TLS, FEAT."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    FTPClient,
    FTPServer,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
)
from securepair.starttls.events import CommandReceived, ConnectionClosed, ReadyToUpgrade
from tests.test_starttls_common import SPECS, connect, script, serve


def test_client_multiline_greeting_and_120() -> None:
    neg = FTPClient()
    events, out = script(
        neg,
        b"120 ready in 1 minute\r\n",
        b"220-Welcome\r\n 220 not the end\r\n220x neither\r\n220 The end\r\n",
        b"234 go\r\n",
    )
    assert out == b"AUTH TLS\r\n"
    assert events == [ReadyToUpgrade()]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"431 unavailable\r\n", StartTLSRefusedError),
        (b"534 policy\r\n", StartTLSRefusedError),
        (b"504 unknown mechanism\r\n", StartTLSNotOfferedError),
        (b"500 what\r\n", StartTLSNotOfferedError),
        (b"421 closing\r\n", PeerClosedError),
        (b"200 odd\r\n", StartTLSProtocolError),
    ],
)
def test_client_refusals(reply: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        script(FTPClient(), b"220 hi\r\n", reply)


def test_client_bad_greeting() -> None:
    with pytest.raises(StartTLSRefusedError):
        script(FTPClient(), b"530 go away\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(FTPClient(), b"hello\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(FTPClient(), b"331 what\r\n")


def test_followup_feat() -> None:
    run = connect(SPECS["ftp"])
    followup = run.client.neg.followup()
    assert followup.data_to_send() == b"FEAT\r\n"
    followup.receive_data(b"502 no FEAT\r\n")
    assert followup.capabilities == ()
    followup = run.client.neg.followup()
    with pytest.raises(PeerClosedError):
        followup.receive_data(b"421 bye\r\n")
    followup = run.client.neg.followup()
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(b"230 odd\r\n")


def test_server_feat_and_auth() -> None:
    neg = FTPServer(capabilities=["UTF8", "AUTH TLS", "PBSZ"])
    assert neg.data_to_send() == b"220 FTP server ready\r\n"
    _, out = serve(neg, b"FEAT\r\n")
    assert out == b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n UTF8\r\n211 End\r\n"
    for mechanism in (b"TLS", b"tls-c", b"SSL"):
        events, out = serve(FTPServer(), b"AUTH " + mechanism + b"\r\n")
        assert out == b"234 AUTH TLS successful\r\n"
        assert events == [ReadyToUpgrade(pipelined=0)]


def test_server_refusals_before_tls() -> None:
    neg = FTPServer()
    events, out = serve(
        neg,
        b"AUTH\r\n",
        b"AUTH KERBEROS_V4\r\n",
        b"PBSZ 0\r\n",
        b"PROT P\r\n",
        b"USER alice\r\n",
        b"PASS x\r\n",
        b"NOOP\r\n",
        b"\r\n",
        b"QUIT\r\n",
    )
    assert out == (
        b"501 Syntax: AUTH TLS\r\n"
        b"504 Unknown AUTH type\r\n"
        b"503 Security data exchange not complete: AUTH TLS first\r\n"
        b"503 Security data exchange not complete: AUTH TLS first\r\n"
        b"530 TLS required: issue AUTH TLS first\r\n"
        b"530 TLS required: issue AUTH TLS first\r\n"
        b"200 NOOP ok\r\n"
        b"500 Syntax error, command unrecognized\r\n"
        b"221 Goodbye\r\n"
    )
    assert events == [ConnectionClosed(reason="quit")]


def test_server_hook() -> None:
    neg = FTPServer(require_tls=False)
    events, _ = serve(neg, b"SYST\r\n", answer=False)
    assert isinstance(events[0], CommandReceived) and events[0].command == "SYST"
    neg.reply(215, "UNIX Type: L8")
    assert neg.data_to_send() == b"215 UNIX Type: L8\r\n"
    serve(neg, b"HELP\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply_raw(b"214 no crlf")
    neg.reply_default()
    assert neg.data_to_send() == b"502 Command not implemented\r\n"


def test_server_answer_in_tls() -> None:
    neg = FTPServer(tls_capabilities=["UTF8", "MLST"])
    assert neg.answer_in_tls(b"AUTH TLS\r\n") == b"503 TLS is already active\r\n"
    assert neg.answer_in_tls(b"FEAT\r\n") == (
        b"211-Features:\r\n PBSZ\r\n PROT\r\n UTF8\r\n MLST\r\n211 End\r\n"
    )
    assert neg.answer_in_tls(b"PBSZ 0\r\n") is None
