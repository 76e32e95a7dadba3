"""Differential tests: the C framer and the Python twin, on the same inputs.

For every input both must return equal results, or raise the same exception
type with the same message, code, offset and value.  Inputs: arbitrary
bytes, valid record streams (whole and cut at every offset), and
ClientHellos built from random fields, fragmented at random, then mutated
(bytes flipped, length fields overwritten, cut, spliced).

Example counts scale with the hypothesis profile: the ``ci`` profile runs
104,000 examples in all (about two minutes); ``dev`` a fiftieth of
that; ``long`` ten times as many.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securepair.errors import ClientHelloError, RecordError
from securepair.records import MAX_TLS12_CIPHERTEXT, MAX_TLS13_CIPHERTEXT
from securepair.records import python as py

from .fixtures_records import (
    extension,
    groups_extension,
    handshake,
    hello_body,
    record,
    records,
    sigalgs_extension,
    sni_extension,
    u8,
    u16,
    versions_extension,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

_SCALE = {"dev": 0.02, "ci": 1.0, "long": 10.0}.get(
    os.environ.get("HYPOTHESIS_PROFILE", "dev"), 0.02
)


def examples(at_ci: int) -> int:
    """The number of examples for a test that runs ``at_ci`` under CI."""
    return max(50, int(at_ci * _SCALE))


#: Examples per test under this profile.
BUDGET = {
    "test_arbitrary_bytes": examples(25_000),
    "test_tls_flavoured_bytes": examples(15_000),
    "test_valid_streams": examples(15_000),
    "test_streams_cut_at_every_offset": examples(5_000),
    "test_mutated_client_hellos": examples(32_000),
    "test_client_hellos_cut_at_every_offset": examples(4_000),
    "test_client_hellos_among_other_records": examples(8_000),
}

# Generating a ClientHello is slower than the checks; that is expected.
BIG = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

Outcome = tuple[object, ...]


def outcome(fn: Callable[..., object], *args: object) -> Outcome:
    """The result, or the error with every attribute the twins must agree on."""
    try:
        return ("ok", fn(*args))
    except RecordError as e:
        return ("error", type(e), str(e), e.code, e.offset, e.value)
    except ClientHelloError as e:
        return ("error", type(e), str(e), e.code)


def same(
    c: ModuleType, data: bytes | bytearray | memoryview, max_length: int | None = None
) -> None:
    """Both framers agree on ``scan`` and ``parse_client_hello`` of ``data``."""
    if max_length is None:
        assert outcome(c.scan, data) == outcome(py.scan, data)
    else:
        assert outcome(c.scan, data, max_length) == outcome(py.scan, data, max_length)
    assert outcome(c.parse_client_hello, data) == outcome(py.parse_client_hello, data)


LIMITS = st.sampled_from(
    [MAX_TLS12_CIPHERTEXT, MAX_TLS13_CIPHERTEXT, 2**14, 0, 1, 100, 2**16, -1, 10**20]
)


# --------------------------------------------------------------------------
# Arbitrary bytes, and bytes that start like TLS.

_TLSISH = (20, 21, 22, 23, 24, 3, 3, 3, 1, 0, 0, 0xFF)


def _tlsish(blob: bytes) -> bytes:
    # Half the bytes from those a record header is made of, so that headers
    # that nearly pass (and lengths that nearly fit) come up often.
    return bytes(_TLSISH[x % len(_TLSISH)] if x & 0x80 else x for x in blob)


@settings(BIG, max_examples=BUDGET["test_arbitrary_bytes"])
@given(data=st.binary(max_size=400), max_length=LIMITS)
def test_arbitrary_bytes(c_framer: ModuleType, data: bytes, max_length: int) -> None:
    same(c_framer, data, max_length)


@settings(BIG, max_examples=BUDGET["test_tls_flavoured_bytes"])
@given(data=st.binary(max_size=120).map(_tlsish))
def test_tls_flavoured_bytes(c_framer: ModuleType, data: bytes) -> None:
    same(c_framer, data)
    same(c_framer, bytearray(data))


# --------------------------------------------------------------------------
# Valid record streams.


def stream_from_blob(blob: bytes, max_payload: int) -> bytes:
    """Valid records, two blob bytes deciding each one's type, version and size."""
    out = bytearray()
    for i in range(0, len(blob) - 2, 3):
        ct = 20 + blob[i] % 5
        version = (0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x03FF)[blob[i + 1] % 6]
        size = blob[i + 2] % (max_payload + 1)
        if size == 0 and ct <= 22:
            size = 1  # TLS forbids these empty; empty ones are tested elsewhere
        out += record(bytes([size & 0xFF]) * size, ct, version)
    return bytes(out)


def record_streams(max_records: int = 30, max_payload: int = 255) -> st.SearchStrategy[bytes]:
    """Streams of up to ``max_records`` valid records."""
    return st.binary(max_size=3 * max_records).map(lambda b: stream_from_blob(b, max_payload))


@settings(BIG, max_examples=BUDGET["test_valid_streams"])
@given(
    stream=record_streams(),
    tail=st.binary(max_size=8),
    max_length=LIMITS,
    wrap=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_valid_streams(
    c_framer: ModuleType,
    stream: bytes,
    tail: bytes,
    max_length: int,
    wrap: Callable[[bytes], bytes | bytearray | memoryview],
) -> None:
    same(c_framer, wrap(stream + tail), max_length)


@settings(BIG, max_examples=BUDGET["test_streams_cut_at_every_offset"])
@given(stream=record_streams(max_records=8, max_payload=24))
def test_streams_cut_at_every_offset(c_framer: ModuleType, stream: bytes) -> None:
    view = memoryview(stream)
    for cut in range(len(stream) + 1):
        same(c_framer, view[:cut])


# --------------------------------------------------------------------------
# ClientHellos: built from random fields, fragmented, then mutated.


class _Bytes:
    """Reads decisions out of one drawn blob, zeros once it runs out.

    One ``st.binary`` draw per ClientHello instead of one draw per field
    keeps generation cheap enough for 100,000 examples, and hypothesis still
    shrinks the blob, so a failure shrinks to a small hello.
    """

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0

    def take(self, n: int) -> bytes:
        out = self.blob[self.pos : self.pos + n]
        self.pos += n
        return out.ljust(n, b"\x00")

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u16s(self, most: int) -> list[int]:
        return [self.u16() for _ in range(1 + self.u8() % most)]


_VERSIONS = (0x0304, 0x0303, 0x0302, 0x7F1C, 0x0A0A)


def _one_extension(b: _Bytes) -> tuple[int, bytes]:
    pick = b.u8()
    if pick < 24:
        # A known extension with a body that is nearly right: its length
        # prefix mostly agrees with what follows, so each inner check of the
        # parser (empty, odd, too long) gets reached.
        etype = (0, 16, 43, 10, 13)[b.u8() % 5]
        data = b.take(b.u8() % 9)
        n = len(data) if b.u8() < 180 else b.u8()
        body = (u8(n) if etype == 43 else u16(n)) + data
        return etype, extension(etype, body[: b.u8() % 3] if b.u8() < 16 else body)
    kind = pick % 6
    if kind == 0:
        # Mostly one printable host name, as RFC 6066 wants; sometimes
        # several entries, other name types, empty or non-ASCII names.
        if b.u8() < 220:
            return 0, sni_extension(bytes(0x21 + x % 94 for x in b.take(1 + b.u8() % 30)))
        entries = b""
        for _ in range(1 + b.u8() % 3):
            raw = b.take(b.u8() % 12)
            entries += u8((0, 0, 1, 255)[b.u8() % 4]) + u16(len(raw)) + raw
        return 0, extension(0, u16(len(entries)) + entries)
    if kind == 1:
        # Protocol names of 1-12 bytes, now and then an empty (bad) one.
        lengths = [b.u8() % 13 if b.u8() < 8 else 1 + b.u8() % 12 for _ in range(1 + b.u8() % 4)]
        entries = b"".join(u8(n) + b.take(n) for n in lengths)
        return 16, extension(16, u16(len(entries)) + entries)
    if kind == 2:
        return 43, versions_extension(*(_VERSIONS[b.u8() % 5] for _ in range(1 + b.u8() % 5)))
    if kind == 3:
        return 10, groups_extension(*b.u16s(8))
    if kind == 4:
        return 13, sigalgs_extension(*b.u16s(8))
    etype = b.u16()
    return etype, extension(etype, b.take(b.u8() % 41))


def hello_from_blob(blob: bytes) -> bytes:
    """A ClientHello, in one or more handshake records, decided by ``blob``."""
    b = _Bytes(blob)
    legacy_version = 0x0303 if b.u8() < 200 else b.u16()
    random = b.take(32)
    session_id = b.take(b.u8() % 33)
    suites = b.u16s(16)
    compression = b.take(1 + b.u8() % 3)
    exts: dict[int, bytes] = {}
    for _ in range(b.u8() % 13):
        etype, ext = _one_extension(b)
        exts.setdefault(etype, ext)
    body = hello_body(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=suites,
        compression=compression,
        extensions=None if b.u8() < 13 else list(exts.values()),
    )
    mode = b.u8() % 3
    sizes: int | list[int]
    if mode == 0:
        sizes = 2**14
    elif mode == 1:
        sizes = 1 + b.u8() % 80
    else:
        sizes = [1 + b.u8() % 120 for _ in range(1 + b.u8() % 8)]
    version = (0x0301, 0x0303, 0x0300)[b.u8() % 3]
    return records(handshake(body), sizes, version=version)


def mutate(data: bytes, blob: bytes) -> bytes:
    """``data`` with up to four mutations decided by ``blob``."""
    b = _Bytes(blob)
    out = bytearray(data)
    for _ in range(b.u8() % 5):
        if not out:
            break
        pos = b.u16() % len(out)
        kind = b.u8() % 7
        if kind == 0:
            out[pos] = b.u8()
        elif kind == 1:
            out[pos] ^= 1 << (b.u8() % 8)
        elif kind == 2:
            # Length fields are where parsers die: make one lie.
            value = (0, 1, 0xFFFF, 0x8000, 0x4001, b.u16())[b.u8() % 6]
            out[pos : pos + 2] = value.to_bytes(2, "big")
        elif kind == 3:
            value = (0, 0x010000, 0x010001, 0xFFFFFF, b.u16() << 8)[b.u8() % 5]
            out[pos : pos + 3] = value.to_bytes(3, "big")
        elif kind == 4:
            del out[pos:]
        elif kind == 5:
            out[pos:pos] = b.take(1 + b.u8() % 8)
        else:
            del out[pos : pos + 1 + b.u8() % 8]
    return bytes(out)


HELLO_BLOBS = st.binary(min_size=300, max_size=600)
client_hellos = HELLO_BLOBS.map(hello_from_blob)
mutated_hellos = st.builds(mutate, client_hellos, st.binary(min_size=24, max_size=40))


@settings(BIG, max_examples=BUDGET["test_mutated_client_hellos"])
@given(data=mutated_hellos)
def test_mutated_client_hellos(c_framer: ModuleType, data: bytes) -> None:
    same(c_framer, data)


@settings(BIG, max_examples=BUDGET["test_client_hellos_cut_at_every_offset"])
@given(data=client_hellos)
def test_client_hellos_cut_at_every_offset(c_framer: ModuleType, data: bytes) -> None:
    view = memoryview(data)
    for cut in range(len(data) + 1):
        same(c_framer, view[:cut])


@st.composite
def hellos_among_records(draw: st.DrawFn) -> bytes:
    """A ClientHello with other records before, inside or after it."""
    hello = draw(client_hellos)
    parts = _split_records(hello)
    other = draw(record_streams(max_records=2, max_payload=10))
    at = draw(st.integers(0, len(parts)))
    return b"".join(parts[:at]) + other + b"".join(parts[at:])


def _split_records(stream: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos + 5 <= len(stream):
        end = pos + 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
        out.append(stream[pos:end])
        pos = end
    return out


@settings(BIG, max_examples=BUDGET["test_client_hellos_among_other_records"])
@given(data=hellos_among_records())
def test_client_hellos_among_other_records(c_framer: ModuleType, data: bytes) -> None:
    same(c_framer, data)


def test_example_budget() -> None:
    """The CI profile runs at least 100,000 differential examples."""
    total = sum(BUDGET.values())
    if _SCALE < 1:
        pytest.skip(f"{total} examples under this profile; 100,000+ under ci")
    assert total >= 100_000
