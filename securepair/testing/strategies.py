"""Hypothesis strategies for testing code that speaks TLS through securepair.

Import them in your own property tests::

    from hypothesis import given
    from securepair.testing import strategies as sps

    @given(hello=sps.client_hellos(), pieces=sps.chunkings())
    def test_my_router_peeks_the_sni(hello, pieces): ...

What there is:

* :func:`records`, :func:`record_streams` -- TLS records (valid headers, or
  any header with ``valid=False``).
* :func:`client_hellos` -- ClientHello records that
  :func:`securepair.records.parse_client_hello` accepts, fragmented over
  several records or not; with ``broken=True``, ones with one named flaw
  (see :data:`HELLO_FLAWS`), which it must refuse or wait on.
* :func:`chunkings` and :func:`chunked` -- how a network cuts a byte stream.
* :func:`tamper_actions`, :func:`tampers`, :func:`tamper_plans` -- plans for
  :class:`~securepair.testing.tamper.TamperLink`.

Everything shrinks toward small, plain inputs: one record, no extensions,
whole delivery, an empty plan.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ..records import ContentType
from .link import Chunking, fixed_cuts, whole
from .tamper import (
    ALERT_CODES,
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Action,
    Delay,
    Direction,
    Drop,
    Duplicate,
    FlipBits,
    Inject,
    Reorder,
    Replace,
    Tamper,
    TamperPlan,
    Truncate,
    alert_record,
    record,
)

__all__ = [
    "records",
    "record_streams",
    "client_hellos",
    "build_client_hello",
    "HELLO_FLAWS",
    "chunkings",
    "chunked",
    "tamper_actions",
    "tampers",
    "tamper_plans",
]

_TYPES = [int(t) for t in ContentType]


# --------------------------------------------------------------------------
# Records.


@st.composite
def records(
    draw: st.DrawFn,
    *,
    content_types: Sequence[int] = _TYPES,
    versions: Sequence[int] = (0x0301, 0x0303),
    max_payload: int = 512,
    valid: bool = True,
) -> bytes:
    """One TLS record.

    With ``valid`` (the default) the header is one :func:`securepair.records.scan`
    accepts: a type from ``content_types``, a version from ``versions``, the
    true length, and no empty handshake, alert or change_cipher_spec record.
    With ``valid=False`` the type, version and length field are any values
    (the payload still has ``max_payload`` bytes at most).
    """
    if not valid:
        ct = draw(st.integers(0, 255))
        version = draw(st.integers(0, 0xFFFF))
        payload = draw(st.binary(max_size=max_payload))
        length = draw(st.one_of(st.just(len(payload)), st.integers(0, 0xFFFF)))
        return struct.pack("!BHH", ct, version, length) + payload
    ct = draw(st.sampled_from(content_types))
    version = draw(st.sampled_from(versions))
    least = 1 if ct <= ContentType.handshake else 0
    payload = draw(st.binary(min_size=least, max_size=max(least, max_payload)))
    return record(ct, payload, version)


def record_streams(
    *, max_records: int = 8, max_payload: int = 512, valid: bool = True
) -> st.SearchStrategy[bytes]:
    """Several records back to back, as one direction of a connection."""
    return st.lists(records(max_payload=max_payload, valid=valid), max_size=max_records).map(
        b"".join
    )


# --------------------------------------------------------------------------
# ClientHellos.


def _u16(n: int) -> bytes:
    return struct.pack("!H", n)


def _vector16(items: Sequence[int]) -> bytes:
    body = b"".join(_u16(i) for i in items)
    return _u16(len(body)) + body


def build_client_hello(
    *,
    server_name: str | None = "example.com",
    alpn: Sequence[str] = (),
    versions: Sequence[int] = (0x0304, 0x0303),
    groups: Sequence[int] = (0x001D, 0x0017),
    signature_algorithms: Sequence[int] = (0x0403, 0x0804),
    cipher_suites: Sequence[int] = (0x1301, 0x1302, 0xC02B),
    session_id: bytes = b"",
    random: bytes = bytes(32),
    extra_extensions: Sequence[tuple[int, bytes]] = (),
    fragment_sizes: Sequence[int] = (),
    record_version: int = 0x0301,
) -> bytes:
    """The bytes of a ClientHello in one or more handshake records.

    ``fragment_sizes`` cuts the handshake message into records of those
    sizes (the last record takes the rest).  Empty lists leave an extension
    out; ``extra_extensions`` are added as given (types must not repeat).
    """
    extensions = []
    if server_name is not None:
        name = server_name.encode("ascii")
        entry = b"\x00" + _u16(len(name)) + name
        extensions.append((0, _u16(len(entry)) + entry))
    if alpn:
        names = b"".join(bytes([len(p)]) + p.encode("latin-1") for p in alpn)
        extensions.append((16, _u16(len(names)) + names))
    if versions:
        extensions.append((43, bytes([2 * len(versions)]) + b"".join(_u16(v) for v in versions)))
    if groups:
        extensions.append((10, _vector16(groups)))
    if signature_algorithms:
        extensions.append((13, _vector16(signature_algorithms)))
    extensions.extend(extra_extensions)
    ext_bytes = b"".join(_u16(t) + _u16(len(d)) + d for t, d in extensions)
    body = (
        b"\x03\x03"
        + random
        + bytes([len(session_id)])
        + session_id
        + _vector16(cipher_suites)
        + b"\x01\x00"
        + _u16(len(ext_bytes))
        + ext_bytes
    )
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    out = bytearray()
    pos = 0
    for size in fragment_sizes:
        if pos >= len(message):
            break
        out += record(22, message[pos : pos + max(1, size)], record_version)
        pos += max(1, size)
    while pos < len(message):
        out += record(22, message[pos : pos + 2**14], record_version)
        pos += 2**14
    return bytes(out)


_HOST_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_HOST = st.lists(_HOST_LABEL, min_size=1, max_size=4).map(".".join)
_ALPN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)

#: The flaws ``client_hellos(broken=True)`` can draw, by name.
HELLO_FLAWS = (
    "session_id_too_long",
    "odd_cipher_suites",
    "no_compression",
    "duplicate_extension",
    "bad_server_name",
    "empty_alpn_name",
    "extensions_length_lies",
    "message_too_long",
    "not_a_client_hello",
    "interleaved_record",
    "not_handshake",
    "truncated",
    "bit_flip",
)


@dataclass(frozen=True)
class _Parts:
    """The drawn fields of a ClientHello (see :func:`build_client_hello`)."""

    server_name: str | None
    alpn: list[str]
    versions: list[int]
    groups: list[int]
    signature_algorithms: list[int]
    cipher_suites: list[int]
    session_id: bytes
    random: bytes
    extra_extensions: list[tuple[int, bytes]]
    record_version: int
    fragment_sizes: list[int]

    def build(self, **changes: Any) -> bytes:
        fields = {**self.__dict__, **changes}
        return build_client_hello(**fields)


@st.composite
def _hello_parts(draw: st.DrawFn, fragment: bool) -> _Parts:
    extra_types = draw(
        st.lists(
            st.integers(0, 0xFFFF).filter(lambda t: t not in (0, 10, 13, 16, 43)),
            max_size=4,
            unique=True,
        )
    )
    return _Parts(
        server_name=draw(st.one_of(st.none(), _HOST)),
        alpn=draw(st.lists(_ALPN, max_size=3)),
        versions=draw(st.lists(st.sampled_from([0x0304, 0x0303, 0x0A0A]), max_size=3)),
        groups=draw(st.lists(st.integers(0, 0xFFFF), max_size=4)),
        signature_algorithms=draw(st.lists(st.integers(0, 0xFFFF), max_size=4)),
        cipher_suites=draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8)),
        session_id=draw(st.sampled_from([b"", bytes(range(32))])),
        random=draw(st.binary(min_size=32, max_size=32)),
        extra_extensions=[(t, draw(st.binary(max_size=24))) for t in extra_types],
        record_version=draw(st.sampled_from([0x0301, 0x0303])),
        fragment_sizes=draw(st.lists(st.integers(1, 200), max_size=4)) if fragment else [],
    )


@st.composite
def client_hellos(
    draw: st.DrawFn,
    *,
    fragment: bool = True,
    broken: bool = False,
    flaws: Sequence[str] = HELLO_FLAWS,
) -> bytes:
    """ClientHello records.

    Valid ones (the default) parse with
    :func:`securepair.records.parse_client_hello`; with ``fragment`` the
    message may be spread over several handshake records.  With
    ``broken=True`` each has one flaw from ``flaws`` (all of
    :data:`HELLO_FLAWS` by default), so a parser must raise
    ``ClientHelloError`` or ``RecordError``, or (for ``message_too_long``
    and ``truncated``) wait for bytes that never come; a ``bit_flip`` may
    also land where any value is valid (the random, a cipher suite).
    """
    unknown = set(flaws) - set(HELLO_FLAWS)
    if unknown:
        raise ValueError(f"unknown flaws {sorted(unknown)}; known: {HELLO_FLAWS}")
    parts = draw(_hello_parts(fragment))
    if not broken:
        return parts.build()
    flaw = draw(st.sampled_from(list(flaws)))
    sizes = parts.fragment_sizes
    # Flaws made in the fields.
    if flaw == "session_id_too_long":
        return parts.build(session_id=bytes(33))
    if flaw == "duplicate_extension":
        return parts.build(extra_extensions=[(0xFF02, b""), (0xFF02, b"x")])
    if flaw == "bad_server_name":
        return parts.build(server_name=draw(st.sampled_from(["", "spa ce", "tab\there", "\x7f"])))
    if flaw == "empty_alpn_name":
        return parts.build(alpn=[*parts.alpn, ""])
    # Flaws made in the bytes of the message, which is then fragmented.
    one = bytearray(parts.build(fragment_sizes=[]))
    if flaw == "odd_cipher_suites":
        _odd_suites(one)
    elif flaw == "no_compression":
        _no_compression(one)
    elif flaw == "extensions_length_lies":
        _lie_about_extensions(one, draw(st.integers(1, 300)))
    elif flaw == "message_too_long":
        declared = int.from_bytes(one[6:9], "big") + draw(st.integers(1, 500))
        one[6:9] = declared.to_bytes(3, "big")
    elif flaw == "not_a_client_hello":
        one[5] = draw(st.sampled_from([0, 2, 4, 11, 20, 0xFF]))
    elif flaw == "interleaved_record":
        # At least two records, with an alert between the first two.
        cut = max(1, (len(one) - 5) // 2)
        hello = _refragment(bytes(one), [cut])
        first_end = 5 + cut
        return hello[:first_end] + alert_record("close_notify") + hello[first_end:]
    hello = _refragment(bytes(one), sizes)
    if flaw == "not_handshake":
        return bytes([draw(st.sampled_from([20, 21, 23, 24]))]) + hello[1:]
    if flaw == "truncated":
        return hello[: draw(st.integers(0, len(hello) - 1))]
    if flaw == "bit_flip":
        at = draw(st.integers(0, len(hello) - 1))
        flipped = bytearray(hello)
        flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    return hello


def _refragment(one_record: bytes, sizes: Sequence[int]) -> bytes:
    """The message of a one-record hello, cut into records of ``sizes``."""
    message = one_record[5:]
    version = int.from_bytes(one_record[1:3], "big")
    out = bytearray()
    pos = 0
    for size in sizes:
        if pos >= len(message):
            break
        out += record(22, message[pos : pos + max(1, size)], version)
        pos += max(1, size)
    if pos < len(message) or not out:
        out += record(22, message[pos:], version)
    return bytes(out)


def _suites_offset(hello: bytearray) -> int:
    # record header 5, handshake header 4, version 2, random 32, session id
    sid = 5 + 4 + 2 + 32
    return sid + 1 + hello[sid]


def _odd_suites(hello: bytearray) -> None:
    at = _suites_offset(hello)
    length = int.from_bytes(hello[at : at + 2], "big")
    hello[at : at + 2] = (length + 1).to_bytes(2, "big")
    hello[at + 2 + length : at + 2 + length] = b"\x00"
    _fix_lengths(hello)


def _no_compression(hello: bytearray) -> None:
    at = _suites_offset(hello)
    at += 2 + int.from_bytes(hello[at : at + 2], "big")
    del hello[at + 1 : at + 1 + hello[at]]
    hello[at] = 0
    _fix_lengths(hello)


def _lie_about_extensions(hello: bytearray, by: int) -> None:
    at = _suites_offset(hello)
    at += 2 + int.from_bytes(hello[at : at + 2], "big")
    at += 1 + hello[at]
    if at + 2 > len(hello):
        hello += b"\x00\x00"
        _fix_lengths(hello)
    value = (int.from_bytes(hello[at : at + 2], "big") + by) & 0xFFFF
    hello[at : at + 2] = value.to_bytes(2, "big")


def _fix_lengths(data: bytearray) -> None:
    """Make the record and handshake lengths of a one-record hello true."""
    data[3:5] = (len(data) - 5).to_bytes(2, "big")
    data[6:9] = (len(data) - 9).to_bytes(3, "big")


# --------------------------------------------------------------------------
# Chunkings.


@st.composite
def chunkings(draw: st.DrawFn, *, max_piece: int = 64) -> Chunking:
    """How a network cuts a stream: whole, or pieces whose sizes hypothesis
    chooses (and shrinks; one byte at a time is among them)."""
    if draw(st.booleans()):
        return whole
    sizes = draw(st.lists(st.integers(1, max_piece), min_size=1, max_size=16))
    return fixed_cuts(sizes)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at hypothesis-chosen places (the pieces join to ``data``)."""
    if not data:
        return []
    cuts = draw(st.lists(st.integers(1, len(data) - 1), unique=True)) if len(data) > 1 else []
    edges = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# --------------------------------------------------------------------------
# Tamper plans.

_DIRECTIONS: list[Direction] = [CLIENT_TO_SERVER, SERVER_TO_CLIENT]


def tamper_actions() -> st.SearchStrategy[Action]:
    """Any one tampering: drop, duplicate, truncate, reorder, delay, flip
    bits, inject an alert or a record, replace with a record."""
    alerts = st.sampled_from(sorted(ALERT_CODES))
    return st.one_of(
        st.just(Drop()),
        st.builds(Duplicate, times=st.integers(1, 3)),
        st.builds(Truncate, keep=st.integers(0, 64), fix_length=st.booleans()),
        st.just(Reorder()),
        st.builds(Delay, records=st.one_of(st.none(), st.integers(1, 4))),
        st.builds(FlipBits, offset=st.integers(-64, 64), mask=st.integers(1, 255)),
        st.builds(
            Inject,
            data=st.one_of(
                st.builds(alert_record, alerts, fatal=st.booleans()),
                records(max_payload=64),
            ),
            after=st.booleans(),
        ),
        st.builds(Replace, data=records(max_payload=64)),
    )


def tampers(
    *, max_index: int = 8, directions: Sequence[Direction] = _DIRECTIONS
) -> st.SearchStrategy[Tamper]:
    """One :class:`~securepair.testing.tamper.Tamper`: an action on the
    n-th record of a direction, counting all records or one content type."""
    return st.builds(
        Tamper,
        action=tamper_actions(),
        direction=st.sampled_from(list(directions)),
        index=st.integers(0, max_index),
        content_type=st.one_of(st.none(), st.sampled_from(_TYPES)),
    )


def tamper_plans(
    *, max_tampers: int = 3, max_index: int = 8, directions: Sequence[Direction] = _DIRECTIONS
) -> st.SearchStrategy[TamperPlan]:
    """A :class:`~securepair.testing.tamper.TamperPlan` of up to
    ``max_tampers`` tamperings (shrinks to the empty plan)."""
    return st.lists(tampers(max_index=max_index, directions=directions), max_size=max_tampers).map(
        lambda ts: TamperPlan(tuple(ts))
    )
