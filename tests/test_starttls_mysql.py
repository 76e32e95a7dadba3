"""MySQL SSL request (client side): the Initial Handshake v10 parser, the
SSLRequest packet, refusals and injection."""

from __future__ import annotations

import struct

import pytest

from securepair.starttls import (
    InjectionError,
    LimitExceededError,
    MySQLClient,
    PeerClosedError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSUsageError,
    State,
)
from securepair.starttls.events import ReadyToUpgrade, TLSRefused
from securepair.starttls.mysql import CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SSL
from tests.test_starttls_common import configs, mysql_handshake, script

CAPS = 0xFFFF | (0x81BF << 16)


def test_parse_and_ssl_request() -> None:
    neg = MySQLClient(character_set=33)
    events, out = script(neg, mysql_handshake(CAPS))
    assert events == [ReadyToUpgrade()]
    hs = neg.server_handshake
    assert hs is not None
    assert hs.server_version == "8.0.36"
    assert hs.connection_id == 42
    assert hs.auth_plugin_data == b"abcdefghijklmnopqrst"
    assert hs.auth_plugin_name == "caching_sha2_password"
    assert hs.character_set == 255 and hs.status_flags == 2
    assert hs.capabilities == CAPS
    assert out[:4] == b"\x20\x00\x00\x01"
    flags, max_packet, charset = struct.unpack_from("<IIB", out, 4)
    assert flags == neg.client_flags
    assert flags & CLIENT_SSL and flags & CLIENT_PROTOCOL_41 and flags & CLIENT_PLUGIN_AUTH
    assert (max_packet, charset) == (1 << 24, 33)
    assert out[13:] == b"\0" * 23
    assert neg.next_sequence_id == 2
    pair = neg.start_tls(configs()[1], server_hostname="localhost")
    assert pair.encrypted.pending


def test_start_tls_needs_the_ssl_request_sent() -> None:
    neg = MySQLClient()
    neg.receive_data(mysql_handshake(CAPS))
    assert neg.state is State.UPGRADE
    with pytest.raises(StartTLSUsageError):
        neg.start_tls(configs()[1])


def test_no_client_ssl() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(MySQLClient(), mysql_handshake(CAPS & ~CLIENT_SSL))
    neg = MySQLClient(allow_plaintext=True)
    events, out = script(neg, mysql_handshake(CAPS & ~CLIENT_SSL))
    assert isinstance(events[0], TLSRefused) and out == b""
    assert neg.server_handshake is not None
    with pytest.raises(StartTLSNotOfferedError):
        script(MySQLClient(), mysql_handshake(CAPS & ~CLIENT_PROTOCOL_41))


def test_err_packet() -> None:
    payload = b"\xff" + struct.pack("<H", 1129) + b"#HY000Host is blocked"
    packet = len(payload).to_bytes(3, "little") + b"\0" + payload
    with pytest.raises(PeerClosedError, match="1129: Host is blocked"):
        script(MySQLClient(), packet)


def test_injection_after_handshake() -> None:
    with pytest.raises(InjectionError):
        script(MySQLClient(), mysql_handshake(CAPS) + b"\x07\0\0\x02\0\0\0\x02\0\0\0")
    neg = MySQLClient()
    script(neg, mysql_handshake(CAPS))
    with pytest.raises(InjectionError):
        neg.receive_data(b"\x07")


def test_byte_by_byte() -> None:
    neg = MySQLClient()
    data = mysql_handshake(CAPS)
    for i in range(len(data)):
        neg.receive_data(data[i : i + 1])
    assert neg.state is State.UPGRADE


def test_plugin_name_without_nul() -> None:
    data = mysql_handshake(CAPS)[:-1]
    data = (len(data) - 4).to_bytes(3, "little") + data[3:]
    neg = MySQLClient()
    script(neg, data)
    assert neg.server_handshake is not None
    assert neg.server_handshake.auth_plugin_name == "caching_sha2_password"


@pytest.mark.parametrize(
    "bad",
    [
        b"\x05\0\0\x01hello",  # sequence id 1
        b"\0\0\0\0",  # empty packet
        b"\x03\0\0\0\x0a8.0",  # no NUL after the version
        b"\x08\0\0\0\x0a8\0abcde",  # cut short
    ],
)
def test_malformed(bad: bytes) -> None:
    with pytest.raises(StartTLSProtocolError):
        script(MySQLClient(), bad)


def test_bad_filler() -> None:
    data = bytearray(mysql_handshake(CAPS))
    filler = data.index(b"\0", 5) + 1 + 4 + 8
    data[filler] = 1
    with pytest.raises(StartTLSProtocolError):
        script(MySQLClient(), bytes(data))


def test_old_protocol() -> None:
    with pytest.raises(StartTLSNotOfferedError):
        script(MySQLClient(), b"\x06\0\0\0\x093.23\0")


def test_limits_and_arguments() -> None:
    neg = MySQLClient(max_buffer_size=1024)
    with pytest.raises(LimitExceededError):
        neg.receive_data(b"\xff\xff\x00\x00")
    with pytest.raises(StartTLSUsageError):
        MySQLClient(character_set=300)
    with pytest.raises(StartTLSUsageError):
        MySQLClient(client_flags=-1)
