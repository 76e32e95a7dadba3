"""XMPP STARTTLS: stream headers, features, <proceed/>/<failure/>, stream
errors, and the strict XML reader."""

from __future__ import annotations

import pytest

from securepair.starttls import (
    InjectionError,
    LimitExceededError,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
    State,
    XMPPClient,
    XMPPServer,
)
from securepair.starttls._xml import MAX_DEPTH
from securepair.starttls.events import CommandReceived, ConnectionClosed, ReadyToUpgrade, TLSRefused
from tests.test_starttls_common import SPECS, connect, script, serve

HEADER = (
    b"<?xml version='1.0'?><stream:stream from='example.com' id='abc' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls></stream:features>"
)
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def client_after_header() -> XMPPClient:
    neg = XMPPClient("example.com")
    neg.data_to_send()
    neg.receive_data(HEADER)
    return neg


def test_client_exchange() -> None:
    neg = XMPPClient("example.com")
    assert neg.data_to_send() == (
        b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    neg.receive_data(HEADER + b"\n  " + FEATURES)
    assert neg.data_to_send() == b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    neg.receive_data(b" \n" + PROCEED)
    assert list(neg.events()) == [ReadyToUpgrade()]


def test_client_proceed_long_form_and_prefixes() -> None:
    neg = XMPPClient("example.com", namespace="jabber:server")
    neg.data_to_send()
    neg.receive_data(
        b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns=\"jabber:server\""
        b' version="1.0">'
    )
    neg.receive_data(
        b"<s:features><t:starttls xmlns:t='urn:ietf:params:xml:ns:xmpp-tls'/>"
        b"<other xmlns='x'>a &amp; b &#65;&#x42;</other></s:features>"
    )
    neg.data_to_send()
    neg.receive_data(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>")
    assert neg.state is State.UPGRADE


def test_client_failure_is_refusal() -> None:
    neg = client_after_header()
    neg.receive_data(FEATURES)
    neg.data_to_send()
    with pytest.raises(StartTLSRefusedError):
        neg.receive_data(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
    neg = XMPPClient("example.com", allow_plaintext=True)
    events, _ = script(
        neg, HEADER + FEATURES, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    )
    assert isinstance(events[0], TLSRefused)


def test_client_not_offered() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(XMPPClient("example.com"), HEADER + b"<stream:features/>")
    with pytest.raises(StartTLSNotOfferedError):
        script(
            XMPPClient("example.com"),
            b"<stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>",
        )


def test_client_stream_errors_and_end() -> None:
    neg = client_after_header()
    with pytest.raises(PeerClosedError, match="host-unknown"):
        neg.receive_data(
            b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"</stream:error>"
        )
    with pytest.raises(PeerClosedError):
        client_after_header().receive_data(b"</stream:stream>")


def test_client_injection_after_proceed() -> None:
    neg = client_after_header()
    neg.receive_data(FEATURES)
    neg.data_to_send()
    with pytest.raises(InjectionError):
        neg.receive_data(PROCEED + b" ")
    neg = client_after_header()
    with pytest.raises(InjectionError):
        neg.receive_data(FEATURES + PROCEED)  # before <starttls/> was sent


@pytest.mark.parametrize(
    "bad",
    [
        b"<!-- comment -->",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
        b"<![CDATA[x]]>",
        b"<?pi x?>",
        b"<stream:features>&custom;</stream:features>",
        b"<stream:features>&#0;</stream:features>",
        b"<stream:features>\x01</stream:features>",
        b"<stream:features>\xff</stream:features>",
        b"<stream:features a='1' a='2'/>",
        b"<undeclared:x/>",
        b"<stream:features></stream:feature>",
        b"text at the top",
        b"</stream:features>",
        b"<stream:features x=1/>",
        b"<a:b:c/>",
        b"<stream:features xmlns:p=''/>",
        b"<message/>",
        b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    ],
)
def test_client_strict_xml(bad: bytes) -> None:
    neg = client_after_header()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(bad)


@pytest.mark.parametrize(
    "bad_header",
    [
        b"<stream xmlns='jabber:client' version='1.0'>",
        b"<stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'/>",
        b"<?xml version='2.0'?>",
        b" <?xml version='1.0'?>",
    ],
)
def test_client_bad_header(bad_header: bytes) -> None:
    neg = XMPPClient("example.com")
    neg.data_to_send()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(bad_header)


def test_depth_and_size_limits() -> None:
    neg = client_after_header()
    with pytest.raises(StartTLSProtocolError, match="deeper"):
        neg.receive_data(b"<stream:features>" + b"<a>" * MAX_DEPTH)
    neg = XMPPClient("example.com", max_buffer_size=2048)
    neg.data_to_send()
    neg.receive_data(HEADER)
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"<stream:features>" + b"<a>x</a>" * 400)
    neg = XMPPClient("example.com", max_line_length=128)
    neg.data_to_send()
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"<stream:stream a='" + b"x" * 200)


def test_tag_with_quoted_gt_byte_by_byte() -> None:
    neg = client_after_header()
    data = b"<stream:features><x xmlns='a' q='>\"' r=\"'>\"/>" + FEATURES[17:]
    for i in range(len(data)):
        neg.receive_data(data[i : i + 1])
    assert neg.data_to_send() == b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def test_bad_domain() -> None:
    for domain in ("", "a b", "x'y", "a<b"):
        with pytest.raises(StartTLSUsageError):
            XMPPClient(domain)
    with pytest.raises(StartTLSUsageError):
        XMPPClient("example.com", namespace="jabber:component:accept")


def test_followup_reads_new_features() -> None:
    run = connect(SPECS["xmpp"])
    followup = run.client.neg.followup()
    assert followup.data_to_send().startswith(b"<?xml version='1.0'?><stream:stream to=")
    followup.receive_data(
        HEADER
        + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        + b"<mechanism>PLAIN</mechanism></mechanisms><bind xmlns='x'/></stream:features><iq/>"
    )
    assert followup.capabilities == ("mechanisms PLAIN", "bind")
    assert followup.stream_header == HEADER[21:]
    assert followup.trailing_data == b"<iq/>"


# --------------------------------------------------------------------------
# Server


def server_with_client_header(**kwargs: object) -> XMPPServer:
    neg = XMPPServer("example.com", stream_id="s1", **kwargs)  # type: ignore[arg-type]
    neg.receive_data(
        b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    return neg


def test_server_answers_header_with_features() -> None:
    neg = server_with_client_header(capabilities=["<register xmlns='x'/>"])
    out = neg.data_to_send()
    assert out == (
        b"<?xml version='1.0'?><stream:stream from='example.com' id='s1' version='1.0' "
        b"xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
        b"</starttls><register xmlns='x'/></stream:features>"
    )
    neg.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq/>")
    assert neg.data_to_send() == PROCEED
    assert list(neg.events()) == [ReadyToUpgrade(pipelined=5)]


def test_server_policy_violation() -> None:
    neg = server_with_client_header()
    neg.data_to_send()
    neg.receive_data(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>")
    assert neg.data_to_send() == (
        b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error></stream:stream>"
    )
    assert neg.state is State.CLOSED
    assert list(neg.events()) == [ConnectionClosed(reason="refused")]


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        (
            b"<stream:stream to='other.org' version='1.0' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>",
            b"host-unknown",
        ),
        (
            b"<stream:stream to='example.com' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>",
            b"unsupported-version",
        ),
        (
            b"<stream:stream to='example.com' version='1.0' xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>",
            b"invalid-namespace",
        ),
        (b"<stream version='1.0' xmlns='jabber:client'>", b"invalid-namespace"),
    ],
)
def test_server_bad_headers(header: bytes, condition: bytes) -> None:
    neg = XMPPServer("example.com", stream_id="s1")
    neg.receive_data(header)
    out = neg.data_to_send()
    assert out.startswith(b"<?xml version='1.0'?><stream:stream from='example.com'")
    assert b"<" + condition + b" " in out
    assert b"<stream:features>" not in out
    assert neg.state is State.CLOSED


def test_server_malformed_xml_gets_stream_error() -> None:
    neg = server_with_client_header()
    neg.data_to_send()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(b"<!-- no -->")
    assert b"not-well-formed" in neg.data_to_send()


def test_server_stream_end() -> None:
    neg = server_with_client_header()
    neg.data_to_send()
    neg.receive_data(b"</stream:stream>")
    assert neg.data_to_send() == b"</stream:stream>"
    assert list(neg.events()) == [ConnectionClosed(reason="quit")]


def test_server_hook_without_require_tls() -> None:
    neg = server_with_client_header(require_tls=False)
    events, _ = serve(
        neg, b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", answer=False
    )
    (event,) = events
    assert isinstance(event, CommandReceived)
    assert event.command == "iq" and event.argument == "jabber:client"
    assert event.raw == b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
    neg.reply_raw(b"<iq type='result' id='1'/>")
    assert neg.data_to_send() == b"<iq type='result' id='1'/>"
    serve(neg, b"<message/>", answer=False)
    neg.reply_default()
    assert b"unsupported-stanza-type" in neg.data_to_send()


def test_server_followup() -> None:
    run = connect(SPECS["xmpp"])
    followup = run.server.neg.followup()
    assert followup.data_to_send() == b""
    with pytest.raises(StartTLSProtocolError):
        followup.receive_data(
            b"<stream:stream to='nowhere.org' version='1.0' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>"
        )
    assert b"host-unknown" in followup.data_to_send()


def test_server_capability_validation() -> None:
    with pytest.raises(StartTLSUsageError):
        XMPPServer("example.com", capabilities=["not xml"])
    neg = XMPPServer(
        "example.com", capabilities=["<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"]
    )
    assert neg.capabilities == []
