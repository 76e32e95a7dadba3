"""NNTP STARTTLS: greetings, refusals, 483 before TLS, CAPABILITIES."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    NNTPClient,
    NNTPServer,
    PeerClosedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
)
from securepair.starttls.events import CommandReceived, ConnectionClosed, ReadyToUpgrade
from tests.test_starttls_common import SPECS, connect, script, serve


@pytest.mark.parametrize("greeting", [b"200 posting ok\r\n", b"201 no posting\r\n"])
def test_client_exchange(greeting: bytes) -> None:
    neg = NNTPClient()
    neg.receive_data(greeting)
    assert neg.data_to_send() == b"STARTTLS\r\n"
    neg.receive_data(b"382 go\r\n")
    assert list(neg.events()) == [ReadyToUpgrade()]


@pytest.mark.parametrize("reply", [b"580 cannot\r\n", b"502 no\r\n", b"500 what\r\n"])
def test_client_refusals(reply: bytes) -> None:
    with pytest.raises(StartTLSRefusedError):
        script(NNTPClient(), b"200 hi\r\n", reply)


def test_client_other_outcomes() -> None:
    with pytest.raises(PeerClosedError):
        script(NNTPClient(), b"400 going away\r\n")
    with pytest.raises(StartTLSRefusedError):
        script(NNTPClient(), b"502 no service\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(NNTPClient(), b"100 help\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(NNTPClient(), b"200 hi\r\n", b"200 again\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(NNTPClient(), b"hello\r\n")


def test_followup() -> None:
    run = connect(SPECS["nntp"])
    followup = run.client.neg.followup()
    assert followup.data_to_send() == b"CAPABILITIES\r\n"
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(b"500 no\r\n")


def test_server_capabilities_and_483() -> None:
    neg = NNTPServer(capabilities=["VERSION 3", "READER"])
    assert neg.data_to_send() == b"200 NNTP server ready\r\n"
    events, out = serve(neg, b"CAPABILITIES\r\n", b"AUTHINFO USER a\r\n", b"GROUP x\r\n")
    assert out == (
        b"101 Capability list:\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n"
        b"483 Encryption required: issue STARTTLS first\r\n"
        b"483 Encryption required: issue STARTTLS first\r\n"
    )
    assert events == []


def test_server_starttls_syntax_quit_and_hook() -> None:
    assert NNTPServer(posting_allowed=False).data_to_send().startswith(b"201 ")
    neg = NNTPServer(require_tls=False)
    events, out = serve(neg, b"STARTTLS x\r\n", b"@@\r\n", b"GROUP misc\r\n", answer=False)
    assert out == b"501 STARTTLS takes no arguments\r\n500 Unknown command\r\n"
    assert isinstance(events[0], CommandReceived) and events[0].command == "GROUP"
    neg.reply(211, "1 1 1 misc")
    assert neg.data_to_send() == b"211 1 1 1 misc\r\n"
    serve(neg, b"LIST\r\n", answer=False)
    neg.reply(215, "list follows", lines=["misc 1 1 y"])
    assert neg.data_to_send() == b"215 list follows\r\nmisc 1 1 y\r\n.\r\n"
    serve(neg, b"DATE\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply(1000)
    neg.reply_default()
    assert neg.data_to_send() == b"500 Unknown command\r\n"
    events, out = serve(neg, b"QUIT\r\n")
    assert out == b"205 Connection closing\r\n" and events == [ConnectionClosed(reason="quit")]


def test_server_answer_in_tls() -> None:
    neg = NNTPServer(tls_capabilities=["READER", "AUTHINFO USER"])
    assert neg.answer_in_tls(b"STARTTLS\r\n") == b"502 TLS is already active\r\n"
    assert neg.answer_in_tls(b"CAPABILITIES\r\n") == (
        b"101 Capability list:\r\nVERSION 2\r\nREADER\r\nAUTHINFO USER\r\n.\r\n"
    )
    assert neg.answer_in_tls(b"GROUP x\r\n") is None
