"""POP3 STLS: refusals, the server's AUTHORIZATION-state rules, CAPA."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    InjectionError,
    POP3Client,
    POP3Server,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
    State,
)
from securepair.starttls.events import CommandReceived, ConnectionClosed, ReadyToUpgrade, TLSRefused
from tests.test_starttls_common import SPECS, connect, script, serve


def test_client_exchange() -> None:
    neg = POP3Client()
    neg.receive_data(b"+OK ready\r\n")
    assert neg.data_to_send() == b"STLS\r\n"
    neg.receive_data(b"+OK go\r\n")
    assert list(neg.events()) == [ReadyToUpgrade()]


def test_client_refusals() -> None:
    with pytest.raises(StartTLSRefusedError):
        script(POP3Client(), b"+OK\r\n", b"-ERR not supported\r\n")
    with pytest.raises(StartTLSRefusedError):
        script(POP3Client(), b"-ERR go away\r\n")
    neg = POP3Client(allow_plaintext=True)
    events, _ = script(neg, b"+OK\r\n", b"-ERR no\r\n")
    assert isinstance(events[0], TLSRefused) and neg.state is State.PLAINTEXT


@pytest.mark.parametrize("bad", [b"OK\r\n", b"+OKAY\r\n", b"+ok\r\n"])
def test_client_malformed(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(POP3Client(), bad)
    with pytest.raises(StartTLSProtocolError):
        script(POP3Client(), b"+OK\r\n", bad)


def test_client_early_reply() -> None:
    with pytest.raises(InjectionError):
        POP3Client().receive_data(b"+OK\r\n+OK\r\n")


def test_followup_capa() -> None:
    run = connect(SPECS["pop3"])
    followup = run.client.neg.followup()
    assert followup.data_to_send() == b"CAPA\r\n"
    followup.receive_data(b"+OK list\r\nUSER\r\n..dotted\r\n.\r\n")
    assert followup.capabilities == ("USER", ".dotted")
    followup = run.client.neg.followup()
    followup.receive_data(b"-ERR no CAPA\r\n")
    assert followup.capabilities == ()
    followup = run.client.neg.followup()
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(b"what\r\n")


def test_server_capa_lists_stls() -> None:
    _, out = serve(POP3Server(capabilities=["TOP"]), b"CAPA\r\n")
    assert out == b"+OK Capability list follows\r\nTOP\r\nSTLS\r\n.\r\n"


@pytest.mark.parametrize("command", [b"USER alice", b"PASS x", b"APOP a b", b"AUTH PLAIN"])
def test_server_refuses_auth_before_tls(command: bytes) -> None:
    events, out = serve(POP3Server(), command + b"\r\n")
    assert out == b"-ERR [AUTH] Must issue STLS first\r\n"
    assert events == []


def test_server_other_commands() -> None:
    neg = POP3Server()
    events, out = serve(neg, b"STAT\r\n", b"NOOP\r\n", b"STLS x\r\n", b"12\r\n", b"QUIT\r\n")
    assert out == (
        b"-ERR Must issue STLS first\r\n+OK\r\n-ERR STLS takes no arguments\r\n"
        b"-ERR Unknown command\r\n+OK Bye\r\n"
    )
    assert events == [ConnectionClosed(reason="quit")]


def test_server_hook() -> None:
    neg = POP3Server(require_tls=False)
    events, _ = serve(neg, b"USER alice\r\n", answer=False)
    assert isinstance(events[0], CommandReceived) and events[0].argument == "alice"
    neg.reply(True, "send PASS")
    assert neg.data_to_send() == b"+OK send PASS\r\n"
    serve(neg, b"UIDL\r\n", answer=False)
    neg.reply(True, "", lines=["1 abc", ".x"])
    assert neg.data_to_send() == b"+OK\r\n1 abc\r\n..x\r\n.\r\n"
    serve(neg, b"LIST\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply(False, "bad\ntext")
    neg.reply_default()
    assert neg.data_to_send() == b"-ERR Unknown command\r\n"


def test_server_answer_in_tls() -> None:
    neg = POP3Server(capabilities=["TOP"], tls_capabilities=["TOP", "USER"])
    assert neg.answer_in_tls(b"STLS\r\n") == b"-ERR TLS is already active\r\n"
    assert neg.answer_in_tls(b"CAPA\r\n") == b"+OK Capability list follows\r\nTOP\r\nUSER\r\n.\r\n"
    assert neg.answer_in_tls(b"USER a\r\n") is None
    assert neg.answer_in_tls(b"\r\n") is None
