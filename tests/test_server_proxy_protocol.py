"""``securepair.server.proxy_protocol``: PROXY protocol v1 and v2 headers.

Every valid header is parsed whole, at every shorter prefix (None: wait for
more) and with a ClientHello behind it (left untouched).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securepair.server.proxy_protocol import (
    MAX_HEADER_LENGTH,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_NOOP,
    V1_MAX_LENGTH,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    build_v1,
    build_v2,
    looks_like_proxy_header,
    parse_proxy_header,
)

# The start of a TLS 1.2/1.3 ClientHello record, as a client sends it.
CLIENT_HELLO = b"\x16\x03\x01\x00\xf1\x01\x00\x00\xed\x03\x03" + bytes(range(32))

# Written out from the specification's section 2.2, not with build_v2: the
# 12-byte signature, version 2 and command PROXY (0x21), AF_INET over
# STREAM (0x11), 12 bytes of addresses, then source address, destination
# address, source port and destination port in network order.
SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
V2_TCP4_EXAMPLE = (
    SIGNATURE
    + b"\x21"
    + b"\x11"
    + b"\x00\x0c"
    + b"\xc0\xa8\x00\x01"  # 192.168.0.1
    + b"\xc0\xa8\x00\x0b"  # 192.168.0.11
    + b"\xdc\x04"  # 56324
    + b"\x01\xbb"  # 443
)
# HAProxy's health checks: version 2, command LOCAL, AF_UNSPEC, no addresses.
V2_LOCAL_EXAMPLE = SIGNATURE + b"\x20\x00\x00\x00"
# TCP over IPv6 with three TLVs: ALPN "h2", authority, and a NOOP.
V2_TCP6_TLV_EXAMPLE = (
    SIGNATURE
    + b"\x21\x21"
    + (36 + 5 + 14 + 3).to_bytes(2, "big")
    + ipaddress.IPv6Address("2001:db8::1").packed
    + ipaddress.IPv6Address("2001:db8::2").packed
    + b"\x30\x39"  # 12345
    + b"\x20\xfb"  # 8443
    + b"\x01\x00\x02h2"
    + b"\x02\x00\x0bexample.com"
    + b"\x04\x00\x00"
)
V2_UNIX_EXAMPLE = (
    SIGNATURE
    + b"\x21\x31"
    + (216).to_bytes(2, "big")
    + b"/run/client.sock".ljust(108, b"\0")
    + b"/run/haproxy.sock".ljust(108, b"\0")
)

V1_TCP4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 65535 0\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
# The specification's worst case: exactly 107 bytes.
V1_UNKNOWN_LONGEST = (
    b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)
V1_TCP6_LONGEST = (
    b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)

EXAMPLES = {
    "v1-tcp4": (
        V1_TCP4,
        ProxyHeader(
            version=1,
            command="PROXY",
            family="TCP4",
            source=("192.168.0.1", 56324),
            destination=("192.168.0.11", 443),
            length=len(V1_TCP4),
        ),
    ),
    "v1-tcp6": (
        V1_TCP6,
        ProxyHeader(
            version=1,
            command="PROXY",
            family="TCP6",
            source=("2001:db8::1", 65535),
            destination=(str(ipaddress.IPv6Address("::ffff:192.0.2.1")), 0),
            length=len(V1_TCP6),
        ),
    ),
    "v1-tcp6-longest": (
        V1_TCP6_LONGEST,
        ProxyHeader(
            version=1,
            command="PROXY",
            family="TCP6",
            source=("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            destination=("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            length=len(V1_TCP6_LONGEST),
        ),
    ),
    "v1-unknown": (
        V1_UNKNOWN,
        ProxyHeader(
            version=1, command="LOCAL", family="UNSPEC", source=None, destination=None, length=15
        ),
    ),
    "v1-unknown-longest": (
        V1_UNKNOWN_LONGEST,
        ProxyHeader(
            version=1, command="LOCAL", family="UNSPEC", source=None, destination=None, length=107
        ),
    ),
    "v2-tcp4": (
        V2_TCP4_EXAMPLE,
        ProxyHeader(
            version=2,
            command="PROXY",
            family="TCP4",
            source=("192.168.0.1", 56324),
            destination=("192.168.0.11", 443),
            length=28,
        ),
    ),
    "v2-local": (
        V2_LOCAL_EXAMPLE,
        ProxyHeader(
            version=2, command="LOCAL", family="UNSPEC", source=None, destination=None, length=16
        ),
    ),
    "v2-tcp6-tlvs": (
        V2_TCP6_TLV_EXAMPLE,
        ProxyHeader(
            version=2,
            command="PROXY",
            family="TCP6",
            source=("2001:db8::1", 12345),
            destination=("2001:db8::2", 8443),
            length=16 + 58,
            tlvs=(
                (PP2_TYPE_ALPN, b"h2"),
                (PP2_TYPE_AUTHORITY, b"example.com"),
                (PP2_TYPE_NOOP, b""),
            ),
        ),
    ),
    "v2-unix": (
        V2_UNIX_EXAMPLE,
        ProxyHeader(
            version=2,
            command="PROXY",
            family="UNIX",
            source=("/run/client.sock", 0),
            destination=("/run/haproxy.sock", 0),
            length=16 + 216,
        ),
    ),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_whole_byte_by_byte_and_with_tls_behind(name: str) -> None:
    data, expected = EXAMPLES[name]
    assert parse_proxy_header(data) == expected
    assert expected.length == len(data)
    for end in range(len(data)):
        assert parse_proxy_header(data[:end]) is None, end
    followed = data + CLIENT_HELLO
    header = parse_proxy_header(followed)
    assert header == expected
    assert followed[header.length :] == CLIENT_HELLO
    assert parse_proxy_header(bytearray(followed)) == expected
    assert parse_proxy_header(memoryview(followed)) == expected
    assert looks_like_proxy_header(data) is True


def test_v1_unknown_ignores_the_rest_of_its_line() -> None:
    header = parse_proxy_header(b"PROXY UNKNOWN whatever \xff\x00 is here\r\nTLS")
    assert header is not None
    assert header.command == "LOCAL"
    assert header.source is None and header.destination is None
    assert header.length == len(b"PROXY UNKNOWN whatever \xff\x00 is here\r\n")


def test_builders_write_the_specification_examples() -> None:
    assert build_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == V1_TCP4
    assert build_v2(("192.168.0.1", 56324), ("192.168.0.11", 443)) == V2_TCP4_EXAMPLE
    assert build_v2() == V2_LOCAL_EXAMPLE
    tlvs = [(PP2_TYPE_ALPN, b"h2"), (PP2_TYPE_AUTHORITY, b"example.com"), (PP2_TYPE_NOOP, b"")]
    built = build_v2(("2001:db8::1", 12345), ("2001:db8::2", 8443), tlvs=tlvs)
    assert built == V2_TCP6_TLV_EXAMPLE


def test_v2_command_and_families() -> None:
    local = parse_proxy_header(build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), command="LOCAL"))
    assert local is not None
    assert (local.command, local.family, local.source, local.destination) == (
        "LOCAL",
        "TCP4",
        None,
        None,
    )
    unspec = parse_proxy_header(build_v2(command="PROXY", tlvs=[(0xE0, b"x")]))
    assert unspec is not None
    assert (unspec.command, unspec.family, unspec.source, unspec.tlvs) == (
        "PROXY",
        "UNSPEC",
        None,
        ((0xE0, b"x"),),
    )
    udp = bytearray(V2_TCP4_EXAMPLE)
    udp[13] = 0x12
    parsed = parse_proxy_header(udp)
    assert parsed is not None
    assert parsed.family == "UDP4"
    assert parsed.source == ("192.168.0.1", 56324)
    # A longer block than the family needs: the rest is TLVs.
    header = parse_proxy_header(build_v2(("1.2.3.4", 5), ("6.7.8.9", 10), tlvs=[(1, b"")]))
    assert header is not None
    assert header.tlvs == ((1, b""),)


def test_tlv_lookup() -> None:
    header = parse_proxy_header(V2_TCP6_TLV_EXAMPLE)
    assert header is not None
    assert header.tlv(PP2_TYPE_AUTHORITY) == b"example.com"
    assert header.tlv(PP2_TYPE_NOOP) == b""
    assert header.tlv(0x05) is None


def test_v2_accepts_exactly_the_largest_payload() -> None:
    filler = V2_MAX_PAYLOAD - 12 - 3
    data = build_v2(("1.2.3.4", 5), ("6.7.8.9", 10), tlvs=[(PP2_TYPE_NOOP, bytes(filler))])
    assert len(data) == MAX_HEADER_LENGTH
    header = parse_proxy_header(data + CLIENT_HELLO)
    assert header is not None
    assert header.length == MAX_HEADER_LENGTH


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"P", None),
        (b"PROXY", None),
        (b"PROXY ", True),
        (b"PROXY TCP4 garbage", True),
        (b"\r\n\r\n", None),
        (V2_SIGNATURE[:11], None),
        (V2_SIGNATURE, True),
        (b"\x16", False),
        (b"PROXX", False),
        (b"\r\n\r\nGET", False),
        (CLIENT_HELLO, False),
        (memoryview(b"PROXY "), True),
    ],
)
def test_looks_like_proxy_header(data: bytes, expected: bool | None) -> None:
    assert looks_like_proxy_header(data) is expected


# -- errors ------------------------------------------------------------------

SIG = V2_SIGNATURE
ADDRESSES_4 = bytes(12)


def v2(family: int, payload: bytes, *, declared: int | None = None, ver_cmd: int = 0x21) -> bytes:
    size = len(payload) if declared is None else declared
    return SIG + bytes([ver_cmd, family]) + size.to_bytes(2, "big") + payload


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x16", ["expected a PROXY protocol header, got b'\\x16' (a TLS handshake?)"]),
        (
            CLIENT_HELLO,
            ["expected a PROXY protocol header, got b'\\x16\\x03\\x01", "TLS handshake"],
        ),
        (b"GET / HTTP/1.1\r\n", ["expected a PROXY protocol header", "(an HTTP request?)"]),
        (b"PROXX", ["expected a PROXY protocol header, got b'PROXX'"]),
        (b"proxy tcp4 ", ["expected a PROXY protocol header"]),
        (b"PROXY\t", ["expected a PROXY protocol header"]),
        (SIG[:11] + b"\r", ["expected a PROXY protocol header"]),
        (b"\r\n\r\n\r\n", ["expected a PROXY protocol header"]),
        (b"PROXY TCP5 ", ["unknown family b'TCP5'"]),
        (b"PROXY tcp4 ", ["unknown family b'tcp4'"]),
        (b"PROXY UNKNOWNX", ["unknown family"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65536\r\n", ["destination port 65536 is over 65535"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n", ["source port '080' has a leading zero"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 00 443\r\n", ["leading zero"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 443\r\n", ["'123456' is not a number"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8  443\r\n", ["source port '' is not a number"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1", ["byte b'-' at offset 27 cannot appear in a TCP4"]),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", ["'1.2.3.256' is not an IPv4 address"]),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", ["not an IPv4 address"]),
        (b"PROXY TCP4 1.2.3.4 ::1", ["b':'", "cannot appear in a TCP4 line"]),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ["source address '1.2.3.4' is not an IPv6"]),
        (b"PROXY TCP6 ::1%lo ::1 1 2\r\n", ["b'%'", "cannot appear in a TCP6 line"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ["3 fields after the family, expected 4"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", ["5 fields after the family"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ["must end with CRLF"]),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", ["must end with CRLF"]),
        (b"PROXY TCP4 " + b"1" * 96, ["no CRLF within 107 bytes"]),
        (b"PROXY UNKNOWN " + b"x" * 93, ["no CRLF within 107 bytes"]),
        (V1_UNKNOWN_LONGEST[:-2] + b" \r\n", ["no CRLF within 107 bytes"]),
        (SIG + b"\x11", ["v2 header: version 1 in byte 13 (0x11)"]),
        (SIG + b"\x31", ["version 3"]),
        (SIG + b"\x22", ["command 2 (0 LOCAL or 1 PROXY)"]),
        (SIG + b"\x21\x41", ["address family and transport 0x41"]),
        (SIG + b"\x21\x10", ["address family and transport 0x10"]),
        (SIG + b"\x21\x13", ["0x13"]),
        (SIG + b"\x21\x11\x00\x08", ["length 8 is shorter than the 12 bytes TCP4 needs"]),
        (SIG + b"\x21\x21\x00\x0c", ["shorter than the 36 bytes TCP6 needs"]),
        (SIG + b"\x21\x31\x00\x24", ["shorter than the 216 bytes UNIX needs"]),
        (SIG + b"\x21\x11\x10\x01", ["length 4097 is over the 4096 bytes", "64 KiB"]),
        (SIG + b"\x21\x11\xff\xff", ["length 65535 is over"]),
        (v2(0x11, ADDRESSES_4 + b"\x01\x00\x05ab"), ["TLV type 0x01 at offset 28 says 5 bytes"]),
        (v2(0x11, ADDRESSES_4 + b"\x04\x00\x00\x02\x00\xff"), ["TLV type 0x02 at offset 31"]),
        (v2(0x11, ADDRESSES_4 + b"\x01\x00"), ["2 stray bytes at offset 28, too few for a TLV"]),
        (v2(0x00, b"\x01", ver_cmd=0x20), ["1 stray bytes at offset 16"]),
    ],
)
def test_errors_say_what_is_wrong(data: bytes, words: list[str]) -> None:
    with pytest.raises(ProxyProtocolError) as raised:
        parse_proxy_header(data)
    error = raised.value
    assert isinstance(error, ValueError)
    message = str(error)
    for word in words:
        assert word in message
    assert repr(data[:32]) in message
    assert error.first_bytes == data[:32]
    assert "\n" not in message
    # The same verdict with more bytes behind: errors are final.
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(data + CLIENT_HELLO)


def test_long_input_is_shown_shortened() -> None:
    data = b"\x16" * 100
    with pytest.raises(ProxyProtocolError) as raised:
        parse_proxy_header(data)
    assert raised.value.first_bytes == data[:32]
    assert str(raised.value).endswith(f"got {data[:32]!r}... (a TLS handshake?)")


def test_oversized_v2_is_refused_before_its_payload_arrives() -> None:
    # Only the 16 fixed bytes: the refusal needs none of the 5000 announced.
    with pytest.raises(ProxyProtocolError, match="over the 4096 bytes"):
        parse_proxy_header(build_v2(tlvs=[(PP2_TYPE_NOOP, bytes(5000))])[:16])


@pytest.mark.parametrize(
    "prefix",
    [b"PROXY ", b"PROXY TCP4 ", b"PROXY UNKNOWN ", SIG, SIG + b"\x21\x11\x10\x00"],
)
def test_enough_bytes_always_decide(prefix: bytes) -> None:
    for filler in (b"\0", b"1", b"\xff"):
        data = (prefix + filler * MAX_HEADER_LENGTH)[:MAX_HEADER_LENGTH]
        with contextlib.suppress(ProxyProtocolError):
            assert parse_proxy_header(data) is not None


# -- builders ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (("10.0.0.1", 0), ("10.0.0.2", 65535)),
        (("2001:db8::1", 1234), ("2001:db8::2", 443)),
        (("::ffff:192.0.2.1", 1), ("::1", 2)),
    ],
)
def test_builder_round_trips(source: tuple[str, int], destination: tuple[str, int]) -> None:
    normal = (str(ipaddress.ip_address(source[0])), source[1])
    for data in (build_v1(source, destination), build_v2(source, destination)):
        header = parse_proxy_header(data)
        assert header is not None
        assert header.command == "PROXY"
        assert header.source == normal
        assert header.destination == (str(ipaddress.ip_address(destination[0])), destination[1])
        assert header.length == len(data)
        assert header.family == ("TCP4" if "." in source[0] and ":" not in source[0] else "TCP6")


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: build_v1(("10.0.0.1", 1), ("::1", 2)), "not both IPv4 or both IPv6"),
        (lambda: build_v1(("10.0.0.1", 65536), ("10.0.0.2", 2)), "source port 65536"),
        (lambda: build_v1(("10.0.0.1", 1), ("10.0.0.2", -1)), "destination port -1"),
        (lambda: build_v1(("localhost", 1), ("10.0.0.2", 2)), "'localhost' is not an IP"),
        (lambda: build_v2(("10.0.0.1", 1), None), "both source and destination"),
        (lambda: build_v2(command="HEALTH"), "'HEALTH' is not 'PROXY' or 'LOCAL'"),
        (lambda: build_v2(tlvs=[(256, b"")]), "TLV type 256 is not a byte"),
        (lambda: build_v2(tlvs=[(1, bytes(70000))]), "70000 bytes is over 65535"),
        (lambda: build_v2(tlvs=[(1, bytes(40000))] * 2), "over 65535"),
    ],
)
def test_builder_errors(call: Callable[[], bytes], words: str) -> None:
    with pytest.raises(ValueError) as raised:
        call()
    assert words in str(raised.value)


# -- properties --------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)
tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5)


@st.composite
def endpoints(draw: st.DrawFn) -> tuple[tuple[str, int], tuple[str, int]]:
    addresses = draw(st.sampled_from([ipv4, ipv6]))
    return (draw(addresses), draw(ports)), (draw(addresses), draw(ports))


valid_headers = st.one_of(
    endpoints().map(lambda pair: build_v1(*pair)),
    st.tuples(endpoints(), tlv_lists).map(lambda args: build_v2(*args[0], tlvs=args[1])),
    tlv_lists.map(lambda tlvs: build_v2(tlvs=tlvs)),
    st.binary(max_size=90)
    .filter(lambda junk: b"\r\n" not in junk and not junk.endswith(b"\r"))
    .map(lambda junk: b"PROXY UNKNOWN " + junk + b"\r\n"),
)


@given(header=valid_headers, trailing=st.binary(max_size=40))
def test_a_valid_header_byte_by_byte_is_none_until_its_last_byte(
    header: bytes, trailing: bytes
) -> None:
    for end in range(len(header)):
        assert parse_proxy_header(header[:end]) is None
    parsed = parse_proxy_header(header)
    assert parsed is not None
    assert parsed.length == len(header)
    assert parse_proxy_header(header + trailing) == parsed


@given(pair=endpoints(), tlvs=tlv_lists)
def test_builder_round_trip_property(
    pair: tuple[tuple[str, int], tuple[str, int]], tlvs: list[tuple[int, bytes]]
) -> None:
    source, destination = pair
    header = parse_proxy_header(build_v2(source, destination, tlvs=tlvs))
    assert header is not None
    assert (header.source, header.destination, header.tlvs) == (source, destination, tuple(tlvs))
    header = parse_proxy_header(build_v1(source, destination))
    assert header is not None
    assert (header.source, header.destination, header.tlvs) == (source, destination, ())


garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda tail: SIG + tail),
    st.binary(max_size=120).map(lambda tail: b"PROXY " + tail),
    st.tuples(st.sampled_from([b"TCP4 ", b"TCP6 ", b"UNKNOWN"]), st.binary(max_size=110)).map(
        lambda parts: b"PROXY " + parts[0] + parts[1]
    ),
    st.tuples(valid_headers, st.integers(0, 200), st.integers(0, 255)).map(
        # One byte of a valid header changed.
        lambda args: args[0][: args[1]] + bytes([args[2]]) + args[0][args[1] + 1 :]
    ),
)


@given(data=garbage)
def test_any_bytes_give_none_a_header_or_the_typed_error(data: bytes) -> None:
    try:
        result = parse_proxy_header(data)
    except ProxyProtocolError:
        verdict = "error"
    else:
        verdict = "more" if result is None else "header"
        if result is not None:
            assert 0 < result.length <= min(len(data), MAX_HEADER_LENGTH)
            assert looks_like_proxy_header(data) is True
    if len(data) >= MAX_HEADER_LENGTH:
        assert verdict != "more"
    # Decisions are final and early: a prefix of undecided bytes is
    # undecided; a prefix of bad bytes is undecided or bad.
    for end in range(len(data)):
        try:
            shorter = parse_proxy_header(data[:end])
        except ProxyProtocolError:
            assert verdict == "error", end
        else:
            if verdict == "header" and result is not None and end >= result.length:
                assert shorter == result, end
            else:
                assert shorter is None, end
    looks = looks_like_proxy_header(data)
    if looks is False:
        assert verdict == "error"


def test_v1_limit_constant_matches_the_specification() -> None:
    assert len(V1_UNKNOWN_LONGEST) == V1_MAX_LENGTH
