"""ManageSieve STARTTLS: the capability greeting, literals, ENCRYPT-NEEDED,
and the capabilities the server sends unasked inside TLS."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    InjectionError,
    LimitExceededError,
    ManageSieveClient,
    ManageSieveServer,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
)
from securepair.starttls.events import (
    CapabilitiesReceived,
    CommandReceived,
    ConnectionClosed,
    ReadyToUpgrade,
)
from securepair.starttls.sieve import quote
from tests.test_starttls_common import SPECS, connect, script, serve

GREETING = (
    b'"IMPLEMENTATION" "Dovecot Pigeonhole"\r\n"SIEVE" "fileinto"\r\n'
    b'"NOTIFY" {7}\r\nmailto\n\r\n"SASL" ""\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\nOK "ready"\r\n'
)


def test_client_exchange_with_literal_in_greeting() -> None:
    neg = ManageSieveClient()
    events, out = script(neg, GREETING, b'OK "Begin TLS negotiation now."\r\n')
    assert out == b"STARTTLS\r\n"
    assert events == [ReadyToUpgrade()]


def test_client_greeting_byte_by_byte() -> None:
    neg = ManageSieveClient()
    neg.data_to_send()
    for i in range(len(GREETING)):
        neg.receive_data(GREETING[i : i + 1])
    assert neg.data_to_send() == b"STARTTLS\r\n"


def test_client_not_offered_and_refused() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(ManageSieveClient(), b'"SASL" "PLAIN"\r\nOK\r\n')
    with pytest.raises(StartTLSRefusedError):
        script(ManageSieveClient(), b'"STARTTLS"\r\nOK\r\n', b'NO "nope"\r\n')
    with pytest.raises(StartTLSRefusedError):
        script(ManageSieveClient(), b'NO "no service"\r\n')
    with pytest.raises(PeerClosedError):
        script(ManageSieveClient(), b'"STARTTLS"\r\nOK\r\n', b'BYE "bye"\r\n')


@pytest.mark.parametrize(
    "bad",
    [
        b'"unterminated\r\n',
        b'"bad \\escape"\r\n',
        b"(CODE\r\n",
        b'"A" OK\r\n',
        b'"A" "B" "C"\r\n',
        b"!!\r\n",
        b"{x}\r\n",
    ],
)
def test_client_malformed(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(ManageSieveClient(), bad)


def test_client_response_code_with_parenthesis_in_a_string() -> None:
    neg = ManageSieveClient()
    events, _ = script(neg, b'"STARTTLS"\r\nOK\r\n', b'OK (TAG "a)b\\"c") "go"\r\n')
    assert events == [ReadyToUpgrade()]


def test_client_capabilities_in_starttls_reply_are_malformed() -> None:
    with pytest.raises(StartTLSProtocolError):
        script(ManageSieveClient(), b'"STARTTLS"\r\nOK\r\n', b'"SASL" "PLAIN"\r\nOK\r\n')


def test_client_literal_limit() -> None:
    with pytest.raises(LimitExceededError):
        script(ManageSieveClient(max_buffer_size=4096), b'"X" {999999}\r\n')


def test_client_injected_capabilities_after_ok() -> None:
    with pytest.raises(InjectionError):
        script(ManageSieveClient(), b'"STARTTLS"\r\nOK\r\n', b'OK\r\n"SASL" "PLAIN"\r\nOK\r\n')


def test_followups_both_sides() -> None:
    run = connect(SPECS["sieve"])
    server_followup = run.server.neg.followup()
    data = server_followup.data_to_send()
    assert server_followup.done
    assert b"STARTTLS" not in data and data.endswith(b"OK\r\n")
    client_followup = run.client.neg.followup()
    assert client_followup.data_to_send() == b""
    client_followup.receive_data(data + b"trailing")
    events = list(client_followup.events())
    assert events == [CapabilitiesReceived(capabilities=SPECS["sieve"].tls_capabilities)]
    assert client_followup.trailing_data == b"trailing"
    bad = run.client.neg.followup()
    with pytest.raises(StartTLSProtocolError):
        bad.receive_data(b'NO "x"\r\n')
    bye = run.client.neg.followup()
    with pytest.raises(PeerClosedError):
        bye.receive_data(b'BYE "x"\r\n')


def test_server_greeting() -> None:
    neg = ManageSieveServer(capabilities=["IMPLEMENTATION x", "SASL ", 'SIEVE a"b'], greeting="hi")
    assert neg.data_to_send() == (
        b'"IMPLEMENTATION" "x"\r\n"SASL" ""\r\n"SIEVE" "a\\"b"\r\n"STARTTLS"\r\nOK "hi"\r\n'
    )


def test_server_commands() -> None:
    neg = ManageSieveServer(capabilities=["VERSION 1.0"])
    events, out = serve(
        neg,
        b"CAPABILITY\r\n",
        b"NOOP\r\n",
        b'AUTHENTICATE "PLAIN" {4+}\r\nabcd\r\n',
        b"PUTSCRIPT x\r\n",
        b"STARTTLS x\r\n",
        b"123\r\n",
        b"LOGOUT\r\n",
    )
    assert out == (
        b'"VERSION" "1.0"\r\n"STARTTLS"\r\nOK "Capability completed."\r\n'
        b'OK "NOOP completed."\r\n'
        b'NO (ENCRYPT-NEEDED) "Must issue STARTTLS first"\r\n'
        b'NO (ENCRYPT-NEEDED) "Must issue STARTTLS first"\r\n'
        b'NO "STARTTLS takes no arguments"\r\n'
        b'NO "Syntax error"\r\n'
        b'OK "Logout completed."\r\n'
    )
    assert events == [ConnectionClosed(reason="quit")]


def test_server_literal_hiding_starttls_is_not_starttls() -> None:
    neg = ManageSieveServer()
    events, out = serve(neg, b"PUTSCRIPT {10+}\r\nSTARTTLS\r\n\r\n")
    assert out == b'NO (ENCRYPT-NEEDED) "Must issue STARTTLS first"\r\n'
    assert events == []


def test_server_hook_and_reply() -> None:
    neg = ManageSieveServer(require_tls=False)
    events, _ = serve(neg, b'HAVESPACE "x" {3+}\r\nabc\r\n', answer=False)
    (event,) = events
    assert isinstance(event, CommandReceived)
    assert event.raw == b'HAVESPACE "x" {3+}\r\nabc\r\n'
    neg.reply("NO", "too big", code="QUOTA/MAXSIZE")
    assert neg.data_to_send() == b'NO (QUOTA/MAXSIZE) "too big"\r\n'
    serve(neg, b"LISTSCRIPTS\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply("MAYBE")
    neg.reply_default()
    assert neg.data_to_send() == b'NO "Unknown command."\r\n'


def test_server_literal_limit() -> None:
    neg = ManageSieveServer(max_buffer_size=4096)
    neg.data_to_send()
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"PUTSCRIPT {99999+}\r\n")
    assert neg.data_to_send() == b'BYE "Literal too large"\r\n'


def test_server_answer_in_tls() -> None:
    neg = ManageSieveServer(tls_capabilities=["SASL PLAIN"])
    assert neg.answer_in_tls(b"STARTTLS\r\n") == b'NO "TLS is already active."\r\n'
    assert (
        neg.answer_in_tls(b"CAPABILITY\r\n") == b'"SASL" "PLAIN"\r\nOK "Capability completed."\r\n'
    )
    assert neg.answer_in_tls(b"LISTSCRIPTS\r\n") is None


def test_quote() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        quote("a\r\nb")
