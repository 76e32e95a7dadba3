"""SMTP and LMTP STARTTLS: refusals, malformed replies, limits, the
server's rules, and the base machinery that SMTP exercises first."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    InjectionError,
    LimitExceededError,
    LMTPClient,
    LMTPServer,
    PeerClosedError,
    PipelinePolicy,
    SMTPClient,
    SMTPServer,
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
from tests.test_starttls_common import configs, script, serve

GREETING = b"220 mx.example ESMTP\r\n"
EHLO_OK = b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"


# --------------------------------------------------------------------------
# Client


def test_client_happy_path_sends_ehlo_then_starttls() -> None:
    neg = SMTPClient(local_hostname="client.example")
    neg.receive_data(GREETING)
    assert neg.data_to_send() == b"EHLO client.example\r\n"
    neg.receive_data(EHLO_OK)
    assert neg.data_to_send() == b"STARTTLS\r\n"
    neg.receive_data(b"220 2.0.0 go ahead\r\n")
    assert list(neg.events()) == [ReadyToUpgrade()]
    assert neg.state is State.UPGRADE
    pair = neg.start_tls(configs()[1], server_hostname="localhost")
    assert pair.encrypted.pending  # the ClientHello
    assert neg.pair is pair and neg.state is State.UPGRADED
    assert neg.plaintext_capabilities == ()  # forgotten once TLS starts


@pytest.mark.parametrize(
    "reply", [b"454 4.7.0 TLS not available\r\n", b"502 5.5.1 unknown\r\n", b"530 nope\r\n"]
)
def test_client_refusal_is_an_error(reply: bytes) -> None:
    neg = SMTPClient()
    with pytest.raises(StartTLSRefusedError) as info:
        script(neg, GREETING, EHLO_OK, reply)
    assert info.value.response == reply
    assert info.value.protocol == "smtp"
    assert neg.state is State.ERROR
    with pytest.raises(StartTLSUsageError):
        neg.receive_data(b"x")


def test_client_refusal_with_allow_plaintext_is_an_event() -> None:
    neg = SMTPClient(allow_plaintext=True)
    events, _ = script(neg, GREETING, EHLO_OK, b"454 4.7.0 later\r\n250 extra\r\n")
    assert events == [
        TLSRefused(response=b"454 4.7.0 later\r\n", reason=events[0].reason)  # type: ignore[attr-defined]
    ]
    assert neg.state is State.PLAINTEXT
    assert neg.trailing_data == b"250 extra\r\n"
    assert neg.plaintext_capabilities == ("PIPELINING", "STARTTLS")
    with pytest.raises(StartTLSUsageError):
        neg.receive_data(b"more")
    with pytest.raises(StartTLSUsageError):
        neg.start_tls(configs()[1])


def test_client_not_offered() -> None:
    neg = SMTPClient()
    with pytest.raises(StartTLSNotOfferedError):
        script(neg, GREETING, b"250-mx.example\r\n250 PIPELINING\r\n")
    neg = SMTPClient(allow_plaintext=True)
    events, out = script(neg, GREETING, b"250 mx.example\r\n")
    assert isinstance(events[0], TLSRefused) and events[0].not_offered
    assert b"STARTTLS" not in out


def test_client_ehlo_refused_means_not_offered() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(SMTPClient(), GREETING, b"500 5.5.1 what?\r\n")


def test_client_greeting_refused_and_421() -> None:
    with pytest.raises(StartTLSRefusedError):
        script(SMTPClient(), b"554 no service\r\n")
    with pytest.raises(PeerClosedError):
        script(SMTPClient(), GREETING, b"421 4.3.2 shutting down\r\n")


@pytest.mark.parametrize(
    "bad",
    [
        b"hello\r\n",  # not a reply
        b"220-mx\r\n250 mixed codes\r\n",  # code changes mid-reply
        b"99 short\r\n",
        b"220mx\r\n",  # no separator
        b"250 wrong code for a greeting\r\n",
    ],
)
def test_client_malformed_greeting(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(SMTPClient(), bad)


@pytest.mark.parametrize("bad", [b"220 ok\n", b"220 o\rk\r\n", b"220 o\x00k\r\n", b"220 ok\r\r\n"])
def test_client_strict_line_endings(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError, match=r"bare|NUL"):
        script(SMTPClient(), bad)


def test_client_line_limit() -> None:
    neg = SMTPClient(max_line_length=100)
    with pytest.raises(LimitExceededError) as info:
        neg.receive_data(b"220 " + b"x" * 200)
    assert info.value.limit == 100


def test_client_buffer_limit_with_many_lines() -> None:
    neg = SMTPClient(max_buffer_size=1024, max_line_length=256)
    neg.receive_data(GREETING)
    neg.data_to_send()
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"250-keyword\r\n" * 200)


def test_client_reply_before_command_is_injection() -> None:
    """The EHLO reply arrives with the greeting, before EHLO was sent."""
    neg = SMTPClient()
    with pytest.raises(InjectionError):
        neg.receive_data(GREETING + EHLO_OK)
    neg = SMTPClient()
    neg.receive_data(GREETING)
    neg.data_to_send()
    with pytest.raises(InjectionError):
        neg.receive_data(EHLO_OK + b"220 2.0.0 go\r\n")


def test_client_bytes_after_goahead_in_later_call_is_injection() -> None:
    neg = SMTPClient()
    script(neg, GREETING, EHLO_OK, b"220 go\r\n")
    assert neg.state is State.UPGRADE
    with pytest.raises(InjectionError):
        neg.receive_data(b"250 forged\r\n")


def test_client_eof_after_goahead() -> None:
    neg = SMTPClient()
    script(neg, GREETING, EHLO_OK, b"220 go\r\n")
    with pytest.raises(PeerClosedError):
        neg.receive_data(b"")


def test_lmtp_client_uses_lhlo() -> None:
    neg = LMTPClient(local_hostname="c.example")
    neg.receive_data(b"220 lmtp ready\r\n")
    assert neg.data_to_send() == b"LHLO c.example\r\n"


def test_client_rejects_bad_hostname_and_limits() -> None:
    with pytest.raises(StartTLSUsageError):
        SMTPClient(local_hostname="bad name\r\nRSET")
    with pytest.raises(StartTLSUsageError):
        SMTPClient(max_line_length=10)
    with pytest.raises(StartTLSUsageError):
        SMTPClient(max_line_length=10_000, max_buffer_size=1000)


def test_followup_errors() -> None:
    neg = SMTPClient()
    script(neg, GREETING, EHLO_OK, b"220 go\r\n")
    neg.start_tls(configs()[1], server_hostname="localhost")
    followup = neg.followup()
    assert followup is not None
    assert followup.data_to_send() == b"EHLO localhost\r\n"
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(b"554 no\r\n")
    followup = neg.followup()
    assert followup is not None
    with pytest.raises(PeerClosedError):
        followup.receive_data(b"421 bye\r\n")
    followup = neg.followup()
    assert followup is not None
    followup.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n221 extra")
    assert followup.done and followup.capabilities == ("AUTH PLAIN",)
    assert followup.trailing_data == b"221 extra"
    with pytest.raises(StartTLSUsageError):
        followup.receive_data(b"more")


# --------------------------------------------------------------------------
# Server


def test_server_greeting_and_ehlo_advertise_starttls() -> None:
    neg = SMTPServer(hostname="mx.example", capabilities=["SIZE 100", "STARTTLS"])
    assert neg.data_to_send() == b"220 mx.example ESMTP ready\r\n"
    _, out = serve(neg, b"EHLO c.example\r\n")
    assert out == b"250-mx.example\r\n250-SIZE 100\r\n250 STARTTLS\r\n"


@pytest.mark.parametrize(
    "verb", [b"MAIL FROM:<a@b>", b"RCPT TO:<a@b>", b"DATA", b"RSET", b"AUTH PLAIN x"]
)
def test_server_requires_tls_first(verb: bytes) -> None:
    events, out = serve(SMTPServer(), b"EHLO c\r\n", verb + b"\r\n")
    assert out.endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
    assert not [e for e in events if isinstance(e, CommandReceived)]


def test_server_starttls_syntax_and_order() -> None:
    _, out = serve(SMTPServer(), b"STARTTLS\r\n")
    assert out == b"503 5.5.1 Error: send EHLO first\r\n"
    _, out = serve(SMTPServer(), b"EHLO c\r\n", b"STARTTLS now\r\n")
    assert out.endswith(b"501 5.5.4 Syntax error (no parameters allowed)\r\n")
    neg = SMTPServer()
    events, out = serve(neg, b"HELO c\r\n", b"starttls\r\n")
    assert out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert events == [ReadyToUpgrade(pipelined=0)]


def test_server_own_commands() -> None:
    neg = SMTPServer()
    events, out = serve(neg, b"NOOP\r\n", b"EHLO\r\n", b"HELO\r\n", b"xyz!\r\n", b"QUIT\r\n")
    assert out == (
        b"250 2.0.0 OK\r\n"
        b"501 5.5.4 Syntax: EHLO hostname\r\n"
        b"501 5.5.4 Syntax: HELO hostname\r\n"
        b"500 5.5.2 Syntax error, command unrecognized\r\n"
        b"221 2.0.0 Bye\r\n"
    )
    assert events == [ConnectionClosed(reason="quit")]
    assert neg.state is State.CLOSED
    neg.receive_data(b"ignored after QUIT\r\n")


def test_server_lmtp_refuses_helo_and_ehlo() -> None:
    neg = LMTPServer()
    assert neg.data_to_send().startswith(b"220 ")
    _, out = serve(neg, b"EHLO c\r\n", b"LHLO c\r\n")
    assert out.startswith(b"500 5.5.1 Unknown command: use LHLO\r\n")
    assert out.endswith(b"250 STARTTLS\r\n")


def test_server_hook_without_require_tls() -> None:
    neg = SMTPServer(require_tls=False)
    events, _ = serve(neg, b"EHLO c\r\n", b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", answer=False)
    mail = events[0]
    assert isinstance(mail, CommandReceived)
    assert mail.command == "MAIL" and mail.argument == "FROM:<a@b>"
    assert neg.waiting is mail
    # RCPT waits behind the unanswered MAIL, in order.
    assert len(events) == 1
    neg.reply(250, "2.1.0 Ok")
    rcpt = list(neg.events())
    assert [e.command for e in rcpt] == ["RCPT"]  # type: ignore[attr-defined]
    assert neg.data_to_send() == b"250 2.1.0 Ok\r\n"
    neg.reply(550, ["5.1.1 no such user", "really"])
    assert neg.data_to_send() == b"550-5.1.1 no such user\r\n550 really\r\n"
    with pytest.raises(StartTLSUsageError):
        neg.reply(250)


def test_server_release_hands_over_plaintext() -> None:
    neg = SMTPServer(require_tls=False)
    events, _ = serve(neg, b"EHLO c\r\n", b"MAIL FROM:<a@b>\r\nDATA\r\n", answer=False)
    assert isinstance(events[0], CommandReceived)
    rest = neg.release()
    assert rest == b"MAIL FROM:<a@b>\r\nDATA\r\n"
    assert neg.state is State.PLAINTEXT and neg.trailing_data == rest
    with pytest.raises(StartTLSUsageError):
        neg.release()


def test_server_auto_answer_off_shows_ehlo() -> None:
    neg = SMTPServer(auto_answer=())
    events, out = serve(neg, b"EHLO c\r\n", answer=False)
    assert [e.command for e in events] == ["EHLO"]  # type: ignore[attr-defined]
    assert out == b""
    neg.capabilities = ["8BITMIME"]
    neg.reply_default()
    assert neg.data_to_send() == b"250-localhost\r\n250-8BITMIME\r\n250 STARTTLS\r\n"
    with pytest.raises(StartTLSUsageError):
        SMTPServer(auto_answer=["MAIL"])


def test_server_raw_reply_checks() -> None:
    neg = SMTPServer(require_tls=False)
    serve(neg, b"VRFY x\r\n", answer=False)
    with pytest.raises(StartTLSUsageError):
        neg.reply_raw(b"252 no crlf")
    with pytest.raises(StartTLSUsageError):
        neg.reply(99, "bad code")
    with pytest.raises(StartTLSUsageError):
        neg.reply(250, "two\r\nlines")
    neg.reply_raw(b"252 2.0.0 maybe\r\n")
    assert neg.data_to_send() == b"252 2.0.0 maybe\r\n"


@pytest.mark.parametrize("bad", [b"EHLO c\n", b"EHLO c\rX\r\n", b"EH\x00LO\r\n"])
def test_server_bad_framing_replies_then_fails(bad: bytes) -> None:
    neg = SMTPServer()
    neg.data_to_send()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(bad)
    assert neg.data_to_send().startswith(b"500 5.5.2 Syntax error: ")
    assert neg.state is State.ERROR


def test_server_line_and_buffer_limits() -> None:
    neg = SMTPServer(max_line_length=512)
    neg.data_to_send()
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"EHLO " + b"x" * 600 + b"\r\n")
    assert neg.data_to_send() == b"500 5.5.2 Syntax error: line too long\r\n"
    # Pipelined commands behind an unanswered one fill the buffer.
    neg = SMTPServer(require_tls=False, max_buffer_size=4096, max_line_length=512)
    serve(neg, b"MAIL FROM:<a@b>\r\n", answer=False)
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"NOOP\r\n" * 1000)


def test_server_pipelined_bytes_policies() -> None:
    for policy, expected in (
        (PipelinePolicy.TLS_INPUT, 6),
        (PipelinePolicy.DROP, 6),
    ):
        neg = SMTPServer(policy=policy)
        events, out = serve(neg, b"EHLO c\r\nSTARTTLS\r\nRSET\r\n")
        assert out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
        assert events[-1] == ReadyToUpgrade(pipelined=expected)
        assert neg.state is State.UPGRADE
    neg = SMTPServer(policy=PipelinePolicy.ABORT)
    neg.data_to_send()
    with pytest.raises(InjectionError) as info:
        neg.receive_data(b"EHLO c\r\nSTARTTLS\r\nRSET\r\n")
    assert info.value.injected == b"RSET\r\n"
    with pytest.raises(StartTLSUsageError):
        SMTPServer(policy="drop")  # type: ignore[arg-type]


def test_server_tls_input_limit_before_start_tls() -> None:
    neg = SMTPServer(max_buffer_size=4096, max_line_length=512)
    serve(neg, b"EHLO c\r\n", b"STARTTLS\r\n")
    neg.receive_data(b"\x16" * 4000)
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"\x16" * 200)


def test_server_eof_after_starttls_reaches_the_pair() -> None:
    from securepair.errors import RaggedEOFError

    neg = SMTPServer()
    serve(neg, b"EHLO c\r\n", b"STARTTLS\r\n")
    neg.receive_data(b"")
    with pytest.raises(RaggedEOFError):
        neg.start_tls(configs()[0])


def test_server_answer_in_tls() -> None:
    neg = SMTPServer(capabilities=["SIZE 1"], tls_capabilities=["SIZE 1", "AUTH PLAIN", "STARTTLS"])
    assert neg.answer_in_tls(b"STARTTLS\r\n") == b"503 5.5.1 Error: TLS already active\r\n"
    assert neg.answer_in_tls(b"EHLO c\r\n") == b"250-localhost\r\n250-SIZE 1\r\n250 AUTH PLAIN\r\n"
    assert neg.answer_in_tls(b"MAIL FROM:<a@b>\r\n") is None
    assert neg.answer_in_tls(b"!!\r\n") is None
    lmtp = LMTPServer()
    assert lmtp.answer_in_tls(b"LHLO c\r\n") == b"250 localhost\r\n"


def test_server_bad_arguments() -> None:
    with pytest.raises(StartTLSUsageError):
        SMTPServer(hostname="two words")
    with pytest.raises(StartTLSUsageError):
        SMTPServer(greeting="a\r\nb")
    with pytest.raises(StartTLSUsageError):
        SMTPServer(capabilities="PIPELINING")
    with pytest.raises(StartTLSUsageError):
        SMTPServer(capabilities=["BAD\nCAP"])
