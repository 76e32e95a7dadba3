"""IMAP STARTTLS: untagged responses, PREAUTH, literals, refusals, and the
server's LOGINDISABLED rules."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    IMAPClient,
    IMAPServer,
    InjectionError,
    LimitExceededError,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
    State,
)
from securepair.starttls.events import (
    CommandReceived,
    ConnectionClosed,
    ReadyToUpgrade,
    TLSRefused,
)
from tests.test_starttls_common import SPECS, configs, connect, script, secure_phase, serve

GREETING = b"* OK IMAP4rev1 ready\r\n"


def test_client_sends_starttls_after_greeting() -> None:
    neg = IMAPClient(tag_prefix="T")
    neg.receive_data(GREETING)
    assert neg.data_to_send() == b"T1 STARTTLS\r\n"
    neg.receive_data(b"T1 OK go\r\n")
    assert list(neg.events()) == [ReadyToUpgrade()]


def test_untagged_responses_before_tagged_ok_carry_nothing() -> None:
    neg = IMAPClient()
    events, _ = script(
        neg,
        GREETING,
        b"* OK [ALERT] forged alert\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n* 3 EXISTS\r\n",
        b"a1 OK Begin TLS\r\n",
    )
    assert events == [ReadyToUpgrade()]
    # Nothing learned: the negotiator exposes no capabilities, and the
    # follow-up asks again inside TLS.
    neg.start_tls(configs()[1], server_hostname="localhost")
    followup = neg.followup()
    assert followup is not None
    assert followup.data_to_send() == b"a2 CAPABILITY\r\n"
    followup.receive_data(b"* CAPABILITY IMAP4rev2 ID\r\na2 OK done\r\n")
    assert followup.capabilities == ("IMAP4rev2", "ID")


def test_untagged_literal_is_skipped() -> None:
    """A literal in an untagged response may contain a line that looks like
    the tagged OK; it must not be read as one."""
    neg = IMAPClient()
    literal = b"x\r\na1 OK fake\r\n"
    events, _ = script(
        neg,
        GREETING,
        b"* 1 FETCH (BODY[] {%d}\r\n" % len(literal) + literal + b")\r\n",
    )
    assert events == []
    assert neg.state is State.NEGOTIATING
    neg.receive_data(b"a1 OK real\r\n")
    assert list(neg.events()) == [ReadyToUpgrade()]


def test_literal_split_byte_by_byte() -> None:
    neg = IMAPClient()
    script(neg, GREETING)
    data = b"* 1 FETCH (BODY[] {5}\r\na\r\nb\n)\r\na1 OK real\r\n"
    for i in range(len(data)):
        neg.receive_data(data[i : i + 1])
    assert neg.state is State.UPGRADE


def test_literal_too_large() -> None:
    neg = IMAPClient(max_buffer_size=4096, max_line_length=1024)
    script(neg, GREETING)
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"* 1 FETCH (BODY[] {99999}\r\n")


def test_preauth_is_a_refusal() -> None:
    with pytest.raises(StartTLSRefusedError, match="PREAUTH"):
        script(IMAPClient(), b"* PREAUTH welcome\r\n")
    neg = IMAPClient(allow_plaintext=True)
    events, out = script(neg, b"* PREAUTH welcome\r\n")
    assert isinstance(events[0], TLSRefused)
    assert out == b""
    assert neg.state is State.PLAINTEXT


def test_bye_greeting_and_bye_later() -> None:
    with pytest.raises(PeerClosedError):
        script(IMAPClient(), b"* BYE go away\r\n")
    with pytest.raises(PeerClosedError):
        script(IMAPClient(), GREETING, b"* BYE shutting down\r\n")


def test_greeting_capabilities_without_starttls() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(IMAPClient(), b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    neg = IMAPClient()
    script(neg, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
    assert neg.state is State.NEGOTIATING


@pytest.mark.parametrize("reply", [b"a1 NO not now\r\n", b"a1 BAD unknown\r\n"])
def test_refusals(reply: bytes) -> None:
    with pytest.raises(StartTLSRefusedError) as info:
        script(IMAPClient(), GREETING, reply)
    assert info.value.response == reply


@pytest.mark.parametrize(
    "bad",
    [b"a2 OK wrong tag\r\n", b"+ continue\r\n", b"a1 PREAUTH odd\r\n", b"a1\r\n"],
)
def test_unexpected_replies(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(IMAPClient(), GREETING, bad)


def test_malformed_greeting() -> None:
    with pytest.raises(StartTLSProtocolError):
        script(IMAPClient(), b"a1 OK tagged greeting\r\n")
    with pytest.raises(StartTLSProtocolError):
        script(IMAPClient(), b"* HELLO\r\n")


def test_tagged_ok_before_command_sent_is_injection() -> None:
    neg = IMAPClient()
    with pytest.raises(InjectionError):
        neg.receive_data(GREETING + b"a1 OK early\r\n")


def test_bad_tag_prefix() -> None:
    with pytest.raises(StartTLSUsageError):
        IMAPClient(tag_prefix="a b")


def test_followup_failures() -> None:
    run = connect(SPECS["imap"])
    followup = run.client.neg.followup()
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(b"a2 BAD no\r\n")
    followup = run.client.neg.followup()
    with pytest.raises(PeerClosedError):
        followup.receive_data(b"* BYE\r\n")
    followup = run.client.neg.followup()
    followup.receive_data(b"a2 OK [CAPABILITY IMAP4rev2] done\r\n")
    assert followup.capabilities == ("IMAP4rev2",)


# --------------------------------------------------------------------------
# Server


def test_server_greeting_lists_starttls_and_logindisabled() -> None:
    neg = IMAPServer()
    assert neg.data_to_send() == (
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] IMAP server ready\r\n"
    )
    neg = IMAPServer(require_tls=False, capabilities=["IMAP4rev2"])
    assert neg.data_to_send() == b"* OK [CAPABILITY IMAP4rev2 STARTTLS] IMAP server ready\r\n"


def test_server_refuses_login_before_tls() -> None:
    events, out = serve(
        IMAPServer(),
        b"a LOGIN alice secret\r\n",
        b"b AUTHENTICATE PLAIN\r\n",
        b"c SELECT INBOX\r\n",
    )
    assert out == (
        b"a NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n"
        b"b NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n"
        b"c BAD Must issue a STARTTLS command first\r\n"
    )
    assert events == []


def test_server_own_commands() -> None:
    neg = IMAPServer()
    events, out = serve(neg, b"a CAPABILITY\r\n", b"b NOOP\r\n", b"c ID NIL\r\n", b"d LOGOUT\r\n")
    assert out == (
        b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\na OK CAPABILITY completed\r\n"
        b"b OK NOOP completed\r\n"
        b"* ID NIL\r\nc OK ID completed\r\n"
        b"* BYE Logging out\r\nd OK LOGOUT completed\r\n"
    )
    assert events == [ConnectionClosed(reason="quit")]


def test_server_starttls_with_arguments() -> None:
    _, out = serve(IMAPServer(), b"a STARTTLS now\r\n")
    assert out == b"a BAD STARTTLS takes no arguments\r\n"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"a+b NOOP\r\n", b"* BAD Invalid tag\r\n"),
        (b"* NOOP\r\n", b"* BAD Invalid tag\r\n"),
        (b"a 123\r\n", b"a BAD Invalid command\r\n"),
    ],
)
def test_server_syntax_errors(line: bytes, reply: bytes) -> None:
    _, out = serve(IMAPServer(), line)
    assert out == reply


def test_server_synchronising_literal_gets_bad_at_once() -> None:
    neg = IMAPServer()
    _, out = serve(neg, b"a LOGIN {5}\r\n")
    assert out == b"a BAD Literals are not accepted before TLS\r\n"
    # The client never sends the literal; the next command is read normally.
    _, out = serve(neg, b"b NOOP\r\n")
    assert out == b"b OK NOOP completed\r\n"


def test_server_non_synchronising_literal_is_skipped() -> None:
    neg = IMAPServer()
    hidden = b"x STARTTLS\r\n"
    _, out = serve(neg, b"a LOGIN {%d+}\r\n" % len(hidden) + hidden + b" pass\r\nb NOOP\r\n")
    assert out == b"a BAD Literals are not accepted before TLS\r\nb OK NOOP completed\r\n"
    assert neg.state is State.NEGOTIATING


def test_server_hook_and_reply() -> None:
    neg = IMAPServer(require_tls=False)
    events, _ = serve(neg, b"t1 LOGIN alice secret\r\n", answer=False)
    (event,) = events
    assert isinstance(event, CommandReceived)
    assert (event.command, event.argument, event.tag) == ("LOGIN", "alice secret", "t1")
    neg.reply("OK", "welcome", untagged=["CAPABILITY IMAP4rev1"])
    assert neg.data_to_send() == b"* CAPABILITY IMAP4rev1\r\nt1 OK welcome\r\n"
    with pytest.raises(StartTLSUsageError):
        neg.reply("OK")
    serve(neg, b"t2 SELECT x\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply("MAYBE")
    with pytest.raises(StartTLSUsageError):
        neg.reply_raw(b"no crlf")
    neg.reply_default()
    assert neg.data_to_send() == b"t2 BAD Command unknown or not allowed now\r\n"


def test_server_answer_in_tls() -> None:
    neg = IMAPServer(tls_capabilities=["IMAP4rev1", "AUTH=PLAIN", "LOGINDISABLED"])
    assert neg.answer_in_tls(b"x STARTTLS\r\n") == b"x BAD TLS is already active\r\n"
    assert neg.answer_in_tls(b"y CAPABILITY\r\n") == (
        b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\ny OK CAPABILITY completed\r\n"
    )
    assert neg.answer_in_tls(b"z LOGIN a b\r\n") is None
    assert neg.answer_in_tls(b"+ nope\r\n") is None


def test_server_capability_validation() -> None:
    with pytest.raises(StartTLSUsageError):
        IMAPServer(capabilities=["AUTH PLAIN"])
    with pytest.raises(StartTLSUsageError):
        IMAPServer(greeting="a\r\n* OK")


def test_server_bad_framing_says_bye() -> None:
    neg = IMAPServer()
    neg.data_to_send()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(b"a NOOP\n")
    assert neg.data_to_send().startswith(b"* BYE ")


def test_pipelined_capability_and_starttls() -> None:
    """CAPABILITY pipelined before STARTTLS is answered; what follows
    STARTTLS is not."""
    neg = IMAPServer()
    events, out = serve(neg, b"a CAPABILITY\r\nb STARTTLS\r\nc LOGOUT\r\n")
    assert out.endswith(b"b OK Begin TLS negotiation now\r\n")
    assert b"LOGOUT" not in out and b"BYE" not in out
    assert events == [ReadyToUpgrade(pipelined=len(b"c LOGOUT\r\n"))]


def test_full_secure_phase() -> None:
    run = connect(SPECS["imap"])
    secure_phase(run, SPECS["imap"])
