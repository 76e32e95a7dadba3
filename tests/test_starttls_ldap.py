"""LDAP StartTLS: the strict BER codec, result codes, notices of
disconnection, and the server's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securepair.starttls import (
    InjectionError,
    LDAPClient,
    LDAPServer,
    LimitExceededError,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
    State,
)
from securepair.starttls import _ber as ber
from securepair.starttls.events import CommandReceived, ConnectionClosed, ReadyToUpgrade
from securepair.starttls.ldap import NOTICE_OF_DISCONNECTION_OID, STARTTLS_OID, starttls_request
from tests.test_starttls_common import examples, script, serve


def response(
    message_id: int,
    code: int,
    text: bytes = b"",
    name: bytes | None = STARTTLS_OID,
    tag: int = 0x78,
) -> bytes:
    parts = [ber.enumerated(code), ber.octets(b""), ber.octets(text)]
    if name is not None:
        parts.append(ber.octets(name, 0x8A))
    return ber.sequence(ber.integer(message_id), ber.sequence(*parts, tag=tag))


# --------------------------------------------------------------------------
# BER


def test_request_bytes() -> None:
    assert starttls_request(1) == bytes.fromhex(
        "301d02010177188016312e332e362e312e342e312e313436362e3230303337"
    )


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 2**31 - 1])
def test_integer_round_trip(value: int) -> None:
    reader = ber.Reader(ber.integer(value))
    assert reader.integer() == value
    reader.done()


@pytest.mark.parametrize(
    "content", [b"", b"\x00\x01", b"\xff\x80", b"\xff", b"\x80\x00\x00\x00\x00"]
)
def test_integer_strict(content: bytes) -> None:
    with pytest.raises(ber.BERError):
        ber.Reader(ber.tlv(0x02, content)).integer()


def test_lengths() -> None:
    # Long form, not minimal (OpenLDAP writes these): accepted.
    assert ber.Reader(b"\x04\x84\x00\x00\x00\x02ab").octets() == b"ab"
    with pytest.raises(ber.BERError, match="indefinite"):
        ber.Reader(b"\x30\x80\x00\x00").sub(0x30)
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x04\x85\x00\x00\x00\x00\x02ab").octets()
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x04\x05ab").octets()
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x1f\x01\x00").read()
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x24\x00").octets(0x24)
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x01\x01\x01").boolean()
    assert ber.Reader(ber.boolean(True)).boolean() is True
    assert ber.Reader(ber.boolean(False)).boolean() is False
    with pytest.raises(ber.BERError):
        ber.Reader(b"\x30\x01\x05\x00").sub(0x30).done()
    assert ber.header_length(b"\x30", 0, 1) is None
    assert ber.header_length(b"\x30\x82\x01", 0, 3) is None


@examples(50)
@given(data=st.binary(max_size=64))
def test_reader_never_crashes(data: bytes) -> None:
    try:
        reader = ber.Reader(data)
        while not reader.at_end():
            tag, content, _, _ = reader.read()
            if tag == 0x02:
                ber.parse_integer(content)
    except ber.BERError:
        pass


@examples(50)
@given(data=st.binary(max_size=80))
def test_client_and_server_only_raise_typed_errors(data: bytes) -> None:
    from securepair.starttls import StartTLSError

    for neg in (LDAPClient(), LDAPServer()):
        neg.data_to_send()
        try:
            neg.receive_data(data)
        except StartTLSError:
            assert neg.state is State.ERROR


# --------------------------------------------------------------------------
# Client


def test_client_success_and_injection() -> None:
    neg = LDAPClient()
    assert neg.data_to_send() == starttls_request(1)
    neg.receive_data(response(1, 0))
    assert list(neg.events()) == [ReadyToUpgrade()]
    neg = LDAPClient(message_id=7)
    neg.data_to_send()
    with pytest.raises(InjectionError):
        neg.receive_data(response(7, 0, name=None) + b"\x30")


def test_client_response_before_request_sent() -> None:
    with pytest.raises(InjectionError):
        LDAPClient().receive_data(response(1, 0))


@pytest.mark.parametrize(
    ("code", "error"),
    [(2, StartTLSNotOfferedError), (1, StartTLSRefusedError), (52, StartTLSRefusedError)],
)
def test_client_refusals(code: int, error: type[Exception]) -> None:
    with pytest.raises(error, match="refused StartTLS"):
        script(LDAPClient(), response(1, code, b"nope"))


def test_client_notice_of_disconnection() -> None:
    with pytest.raises(PeerClosedError, match="going down"):
        script(LDAPClient(), response(0, 52, b"going down", name=NOTICE_OF_DISCONNECTION_OID))


@pytest.mark.parametrize(
    "bad",
    [
        response(2, 0),  # another message ID
        response(1, 0, name=b"1.2.3"),  # another operation
        response(1, 0, tag=0x61),  # a bindResponse
        b"\x04\x00",  # not a SEQUENCE
        b"\x30\x03\x02\x01\x01",  # no protocolOp
        b"\x30\x80",  # indefinite length
        ber.sequence(ber.integer(1), ber.sequence(ber.enumerated(0), tag=0x78)),  # short result
    ],
)
def test_client_malformed(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(LDAPClient(), bad)


def test_client_message_limit() -> None:
    neg = LDAPClient(max_buffer_size=1024)
    neg.data_to_send()
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"\x30\x84\x00\x01\x00\x00")


def test_client_bad_message_id() -> None:
    with pytest.raises(StartTLSUsageError):
        LDAPClient(message_id=0)


# --------------------------------------------------------------------------
# Server


def bind(message_id: int = 2) -> bytes:
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(ber.integer(3), ber.octets(b"cn=a"), ber.octets(b"pw", 0x80), tag=0x60),
    )


def search(base: bytes, scope: int, message_id: int = 3) -> bytes:
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(
            ber.octets(base),
            ber.enumerated(scope),
            ber.enumerated(0),
            ber.integer(0),
            ber.integer(0),
            ber.boolean(False),
            ber.octets(b"objectClass", 0x87),
            ber.sequence(),
            tag=0x63,
        ),
    )


def decode_result(data: bytes) -> tuple[int, int, int]:
    """(message ID, response tag, result code) of one response."""
    message = ber.Reader(data).sub(0x30)
    mid = message.integer()
    tag = message.peek_tag()
    assert tag is not None
    body = message.sub(tag)
    return mid, tag, body.integer(0x0A)


def test_server_starttls() -> None:
    neg = LDAPServer()
    events, out = serve(neg, starttls_request(1))
    assert out == response(1, 0)
    assert events == [ReadyToUpgrade(pipelined=0)]


def test_server_refuses_operations_before_tls() -> None:
    _, out = serve(LDAPServer(), bind(2))
    assert decode_result(out) == (2, 0x61, 13)
    _, out = serve(LDAPServer(), search(b"dc=example", 2))
    assert decode_result(out) == (3, 0x65, 13)


def test_server_root_dse_lists_starttls() -> None:
    _, out = serve(LDAPServer(capabilities=["1.3.6.1.4.1.4203.1.11.3"]), search(b"", 0))
    assert STARTTLS_OID in out and b"1.3.6.1.4.1.4203.1.11.3" in out
    assert b"supportedLDAPVersion" in out
    entry = ber.Reader(out)
    entry.read(0x30)
    assert decode_result(out[entry.pos :]) == (3, 0x65, 0)


def test_server_starttls_with_value_or_critical_control() -> None:
    with_value = ber.sequence(
        ber.integer(4),
        ber.sequence(ber.octets(STARTTLS_OID, 0x80), ber.octets(b"x", 0x81), tag=0x77),
    )
    _, out = serve(LDAPServer(), with_value)
    assert decode_result(out) == (4, 0x78, 2)
    critical = ber.sequence(
        ber.integer(5),
        ber.sequence(ber.octets(STARTTLS_OID, 0x80), tag=0x77),
        ber.sequence(ber.sequence(ber.octets(b"1.2.3"), ber.boolean(True)), tag=0xA0),
    )
    _, out = serve(LDAPServer(), critical)
    assert decode_result(out) == (5, 0x78, 12)
    noncritical = ber.sequence(
        ber.integer(6),
        ber.sequence(ber.octets(STARTTLS_OID, 0x80), tag=0x77),
        ber.sequence(
            ber.sequence(ber.octets(b"1.2.3"), ber.boolean(False), ber.octets(b"v")), tag=0xA0
        ),
    )
    neg = LDAPServer()
    serve(neg, noncritical)
    assert neg.state is State.UPGRADE


def test_server_unbind_and_abandon() -> None:
    neg = LDAPServer()
    abandon = ber.sequence(ber.integer(9), ber.tlv(0x50, b"\x01"))
    unbind = ber.sequence(ber.integer(10), ber.tlv(0x42, b""))
    events, out = serve(neg, abandon, unbind)
    assert out == b""
    assert events == [ConnectionClosed(reason="quit")]


def test_server_malformed_gets_notice_of_disconnection() -> None:
    neg = LDAPServer()
    with pytest.raises(StartTLSProtocolError):
        neg.receive_data(b"\x30\x03\x02\x01\x01")
    out = neg.data_to_send()
    assert NOTICE_OF_DISCONNECTION_OID in out
    assert decode_result(out) == (0, 0x78, 2)
    neg = LDAPServer()
    with pytest.raises(StartTLSProtocolError):
        # A bindResponse, from a client: not an operation a server takes.
        neg.receive_data(ber.sequence(ber.integer(1), ber.tlv(0x61, b"")))


def test_server_hook() -> None:
    neg = LDAPServer(require_tls=False)
    events, _ = serve(neg, bind(2), answer=False)
    (event,) = events
    assert isinstance(event, CommandReceived)
    assert (event.command, event.tag) == ("bindRequest", "2")
    neg.reply(49, "invalid credentials")
    assert decode_result(neg.data_to_send()) == (2, 0x61, 49)
    other = ber.sequence(ber.integer(3), ber.sequence(ber.octets(b"1.2.3", 0x80), tag=0x77))
    serve(neg, other, answer=False)
    neg.reply_default()
    assert decode_result(neg.data_to_send()) == (3, 0x78, 2)
    serve(neg, search(b"dc=x", 2, 4), answer=False)
    neg.reply_default()
    assert decode_result(neg.data_to_send()) == (4, 0x65, 53)
    with pytest.raises(StartTLSUsageError):
        neg.reply(0)


def test_server_answer_in_tls() -> None:
    neg = LDAPServer(tls_capabilities=["1.2.3.4"])
    refusal = neg.answer_in_tls(starttls_request(8))
    assert refusal is not None and decode_result(refusal) == (8, 0x78, 1)
    dse = neg.answer_in_tls(search(b"", 0))
    assert dse is not None and STARTTLS_OID not in dse and b"1.2.3.4" in dse
    assert neg.answer_in_tls(bind(2)) is None
    assert neg.answer_in_tls(b"\x30\x80") is None
    assert neg.answer_in_tls(starttls_request(8) + b"x") is None


def test_server_capability_validation() -> None:
    with pytest.raises(StartTLSUsageError):
        LDAPServer(capabilities=["whoami"])
