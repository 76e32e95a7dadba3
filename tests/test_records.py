"""The record framer: one suite, run against the C framer and the Python twin.

Every test that takes ``framer`` runs twice (see tests/fixtures_records.py).
Error tests check the exception type, its ``code``, ``offset`` and ``value``
and the exact message, because the two implementations promise to agree on
all of them.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
from array import array
from typing import TYPE_CHECKING

import pytest

from securepair import records as records_pkg
from securepair.errors import (
    BadRecordVersionError,
    ClientHelloError,
    EmptyRecordError,
    NotTLSError,
    RecordError,
    RecordOverflowError,
    UnknownContentTypeError,
)
from securepair.records import (
    HEADER_LENGTH,
    MAX_CLIENT_HELLO_LENGTH,
    MAX_TLS12_CIPHERTEXT,
    MAX_TLS13_CIPHERTEXT,
    ClientHello,
    NeedData,
    Record,
    RecordList,
    ScanResult,
    not_tls_error,
    shown_bytes,
    sniff,
)
from securepair.records import _common as common

from .fixtures_records import (
    GROUPS,
    SIGALGS,
    TLS12_SUITES,
    TLS13_SUITES,
    alpn_extension,
    extension,
    groups_extension,
    handshake,
    hello_body,
    hello_in_record,
    record,
    records,
    sigalgs_extension,
    sni_extension,
    tls12_hello,
    tls13_extensions,
    tls13_hello,
    u8,
    u16,
    u24,
    versions_extension,
)

if TYPE_CHECKING:
    from types import ModuleType

APP = 23
HS = 22


def app_record(n: int, version: int = 0x0303) -> bytes:
    return record(bytes(n), APP, version)


# --------------------------------------------------------------------------
# The package surface.


def test_public_names() -> None:
    assert records_pkg.IMPLEMENTATION in ("c", "python")
    for name in ("IMPLEMENTATION", "scan", "parse_client_hello", "sniff", "not_tls_error"):
        assert name in records_pkg.__all__
    assert MAX_TLS13_CIPHERTEXT == 2**14 + 256
    assert MAX_TLS12_CIPHERTEXT == 2**14 + 2048
    assert HEADER_LENGTH == 5


def test_implementation_name(framer: ModuleType) -> None:
    assert framer.IMPLEMENTATION in ("c", "python")


def test_c_constants_match_common(c_framer: ModuleType) -> None:
    """framer.h numbers every code; _common.py words them.  Same numbers."""
    from securepair.records._cframer import lib

    for name in dir(common):
        if name.startswith(("SCAN_", "HELLO_", "F_")) and isinstance(getattr(common, name), int):
            assert getattr(lib, "SP_" + name) == getattr(common, name), name
    assert lib.SP_MAX_CLIENT_HELLO_LENGTH == MAX_CLIENT_HELLO_LENGTH
    assert lib.SP_HEADER_LENGTH == HEADER_LENGTH


def test_c_version_matches_package(c_framer: ModuleType) -> None:
    import securepair

    assert securepair.__version__ == c_framer.COMPILED_VERSION


def test_c_refuses_another_version(c_framer: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module built for another version does not load, and the package does
    not quietly fall back to the twin: a stale build must be rebuilt."""
    import securepair._version

    monkeypatch.setattr(securepair._version, "__version__", "0.0.0.stale")
    monkeypatch.delitem(sys.modules, "securepair.records.c")
    monkeypatch.delattr(records_pkg, "c")
    monkeypatch.delenv("SECUREPAIR_FRAMER", raising=False)
    with pytest.raises(ImportError) as info:
        records_pkg._choose()
    assert getattr(info.value, "mismatch", False) is True
    assert "built for securepair" in str(info.value) and "rebuild" in str(info.value)


def test_choose_falls_back_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from securepair.records import python as py

    monkeypatch.setenv("SECUREPAIR_FRAMER", "python")
    assert records_pkg._choose() is py
    # No C module at all (a SECUREPAIR_BUILD_EXT=no install): the twin.
    monkeypatch.setitem(sys.modules, "securepair.records.c", None)
    monkeypatch.delattr(records_pkg, "c", raising=False)
    monkeypatch.delenv("SECUREPAIR_FRAMER")
    assert records_pkg._choose() is py
    # ... unless the C one was asked for by name.
    monkeypatch.setenv("SECUREPAIR_FRAMER", "c")
    with pytest.raises(ImportError):
        records_pkg._choose()


def test_framer_env_switch_in_a_fresh_process() -> None:
    code = "import securepair.records as r; print(r.IMPLEMENTATION)"
    env = {**os.environ, "SECUREPAIR_FRAMER": "python"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "python"


# --------------------------------------------------------------------------
# scan: complete records.


def test_scan_empty(framer: ModuleType) -> None:
    result = framer.scan(b"")
    assert result == ScanResult(RecordList(array("q")), 0, 0, 0)
    assert list(result.records) == []


def test_scan_one_record(framer: ModuleType) -> None:
    buf = record(b"hello", APP, 0x0303)
    result = framer.scan(buf)
    assert list(result.records) == [Record(APP, 0x0303, 0, 5)]
    assert (result.consumed, result.partial, result.needed) == (10, 0, 0)
    rec = result.records[0]
    assert rec.payload_offset == 5
    assert rec.end == 10
    assert buf[rec.payload_offset : rec.end] == b"hello"


def test_scan_many_records(framer: ModuleType) -> None:
    buf = bytearray()
    expected = []
    types = (20, 21, 22, 23, 24)
    for i in range(3000):
        ct = types[i % 5]
        n = 1 + (i * 7919) % 300
        expected.append(Record(ct, 0x0300 | (i % 4), len(buf), n))
        buf += record(bytes([i & 0xFF]) * n, ct, 0x0300 | (i % 4))
    result = framer.scan(bytes(buf))
    assert list(result.records) == expected
    assert len(result.records) == 3000
    assert result.consumed == len(buf)
    assert (result.partial, result.needed) == (0, 0)


def test_scan_100k_tiny_records(framer: ModuleType) -> None:
    one = app_record(27)
    result = framer.scan(one * 100_000)
    assert len(result.records) == 100_000
    assert result.records[-1] == Record(APP, 0x0303, 32 * 99_999, 27)
    assert result.consumed == 3_200_000


def test_scan_shrinking_records(framer: ModuleType) -> None:
    """Big records first, then tiny ones: the C's room guess must keep up."""
    buf = app_record(16384) * 8 + app_record(0) * 20_000 + app_record(3) * 7
    result = framer.scan(buf)
    assert len(result.records) == 8 + 20_000 + 7
    assert result.consumed == len(buf)
    assert result.records[8] == Record(APP, 0x0303, 8 * 16389, 0)


def test_scan_does_not_look_past_partial_record(framer: ModuleType) -> None:
    """Bytes after a partial record's end are part of that record, unread."""
    buf = app_record(3) + record(b"", APP, 0x0303, length=100) + b"\xff" * 50
    result = framer.scan(buf)
    assert list(result.records) == [Record(APP, 0x0303, 0, 3)]
    assert (result.consumed, result.partial, result.needed) == (8, 55, 50)


# --------------------------------------------------------------------------
# scan: partial records.


@pytest.mark.parametrize("have", range(1, 5))
def test_scan_partial_header(framer: ModuleType, have: int) -> None:
    first = app_record(10)
    buf = first + app_record(20)[:have]
    result = framer.scan(buf)
    assert list(result.records) == [Record(APP, 0x0303, 0, 10)]
    assert result.consumed == len(first)
    assert result.partial == have
    assert result.needed == HEADER_LENGTH - have


@pytest.mark.parametrize("have", [0, 1, 19])
def test_scan_partial_body(framer: ModuleType, have: int) -> None:
    buf = app_record(20)[: HEADER_LENGTH + have]
    result = framer.scan(buf)
    assert list(result.records) == []
    assert (result.consumed, result.partial, result.needed) == (0, HEADER_LENGTH + have, 20 - have)


def test_scan_every_cut(framer: ModuleType) -> None:
    stream = app_record(3) + record(b"\x01", 20) + app_record(0) + record(b"ab", 21) + app_record(9)
    ends = [8, 14, 19, 26, 40]
    for cut in range(len(stream) + 1):
        result = framer.scan(stream[:cut])
        done = [e for e in ends if e <= cut]
        consumed = done[-1] if done else 0
        assert len(result.records) == len(done)
        assert result.consumed == consumed
        assert result.partial == cut - consumed
        if cut == consumed:
            assert result.needed == 0
        else:
            next_end = ends[len(done)]
            if cut - consumed < HEADER_LENGTH:
                assert result.needed == HEADER_LENGTH - (cut - consumed)
            else:
                assert result.needed == next_end - cut


def test_scan_checks_trailing_partial_header(framer: ModuleType) -> None:
    """A bad header fails as soon as its five bytes are in, body or not."""
    buf = app_record(4) + bytes([99, 3, 3, 0, 50]) + b"x"
    with pytest.raises(UnknownContentTypeError) as info:
        framer.scan(buf)
    assert info.value.offset == 9


# --------------------------------------------------------------------------
# scan: errors.


@pytest.mark.parametrize("ct", [0, 19, 25, 0x80, 255])
def test_scan_unknown_content_type(framer: ModuleType, ct: int) -> None:
    buf = app_record(5) + record(b"abc", ct, 0x0303)
    with pytest.raises(UnknownContentTypeError) as info:
        framer.scan(buf)
    e = info.value
    assert isinstance(e, RecordError)
    assert isinstance(e, ValueError)
    assert (e.code, e.offset, e.value) == ("unknown_content_type", 10, ct)
    assert str(e) == (
        f"record at offset 10 has content type {ct}, which TLS does not define (expected 20-24)"
    )


@pytest.mark.parametrize("version", [0x0003, 0x0203, 0x0403, 0xFEFD, 0x1603])
def test_scan_bad_version(framer: ModuleType, version: int) -> None:
    buf = record(b"x", HS, 0x0301) + record(b"abc", APP, version)
    with pytest.raises(BadRecordVersionError) as info:
        framer.scan(buf)
    e = info.value
    assert (e.code, e.offset, e.value) == ("bad_version", 6, version)
    assert str(e) == (
        f"record at offset 6 has version 0x{version:04x}; TLS records have major version 3"
    )


def test_scan_overflow_default_limit(framer: ModuleType) -> None:
    ok = app_record(MAX_TLS12_CIPHERTEXT)
    assert framer.scan(ok).records[0].length == 18432
    header = struct.pack("!BHH", APP, 0x0303, MAX_TLS12_CIPHERTEXT + 1)
    with pytest.raises(RecordOverflowError) as info:
        framer.scan(ok + header)
    e = info.value
    assert (e.code, e.offset, e.value) == ("record_overflow", len(ok), 18433)
    assert str(e) == f"record at offset {len(ok)} is 18433 bytes long, over the limit of 18432"


def test_scan_overflow_tls13_limit(framer: ModuleType) -> None:
    assert framer.scan(app_record(16640), MAX_TLS13_CIPHERTEXT).consumed == 16645
    with pytest.raises(RecordOverflowError) as info:
        framer.scan(app_record(16641), max_length=MAX_TLS13_CIPHERTEXT)
    assert str(info.value) == "record at offset 0 is 16641 bytes long, over the limit of 16640"
    assert info.value.value == 16641


@pytest.mark.parametrize(
    ("max_length", "length", "ok"),
    [
        (100, 100, True),
        (100, 101, False),
        (0, 1, False),
        (2**16, 0xFFFF, True),
        (10**30, 0xFFFF, True),
        (-1, 1, False),
    ],
)
def test_scan_custom_limit(framer: ModuleType, max_length: int, length: int, ok: bool) -> None:
    buf = struct.pack("!BHH", APP, 0x0303, length)
    if ok:
        assert framer.scan(buf, max_length=max_length).needed == length
    else:
        with pytest.raises(RecordOverflowError) as info:
            framer.scan(buf, max_length=max_length)
        assert str(info.value).endswith(f"over the limit of {max_length}")


@pytest.mark.parametrize("ct", [20, 21, 22])
def test_scan_empty_record_forbidden(framer: ModuleType, ct: int) -> None:
    buf = app_record(1) + record(b"", ct, 0x0303)
    with pytest.raises(EmptyRecordError) as info:
        framer.scan(buf)
    e = info.value
    assert (e.code, e.offset, e.value) == ("empty_record", 6, ct)
    name = {20: "change_cipher_spec", 21: "alert", 22: "handshake"}[ct]
    assert str(e) == f"record at offset 6 is an empty {name} record, which TLS forbids"


@pytest.mark.parametrize("ct", [23, 24])
def test_scan_empty_record_allowed(framer: ModuleType, ct: int) -> None:
    """RFC 8446 5.1: zero-length application_data is allowed (traffic analysis
    padding); heartbeat is not forbidden either."""
    buf = record(b"", ct, 0x0303) * 3
    result = framer.scan(buf)
    assert list(result.records) == [Record(ct, 0x0303, i * 5, 0) for i in range(3)]
    assert framer.scan(buf, max_length=0).consumed == 15


@pytest.mark.parametrize("ct", [0, 19, 25, 38, 0x80, 255])
def test_scan_empty_record_of_unknown_type(framer: ModuleType, ct: int) -> None:
    """An empty record is no excuse for an unknown type (the fast path once let
    any type above 22 through when the length was 0)."""
    with pytest.raises(UnknownContentTypeError) as info:
        framer.scan(app_record(0) + record(b"", ct, 0x0303))
    assert (info.value.offset, info.value.value) == (5, ct)
    with pytest.raises(BadRecordVersionError):
        framer.scan(record(b"", APP, 0x0403))


def test_scan_empty_record_over_negative_limit(framer: ModuleType) -> None:
    """Both paths of the header check agree even for a nonsensical limit."""
    with pytest.raises(RecordOverflowError) as info:
        framer.scan(record(b"", APP, 0x0303), max_length=-1)
    assert info.value.value == 0


def test_scan_error_precedence(framer: ModuleType) -> None:
    """Content type, then version, then length, then emptiness."""
    with pytest.raises(UnknownContentTypeError):
        framer.scan(struct.pack("!BHH", 99, 0x0903, 0xFFFF))
    with pytest.raises(BadRecordVersionError):
        framer.scan(struct.pack("!BHH", 22, 0x0903, 0xFFFF))
    with pytest.raises(RecordOverflowError):
        framer.scan(struct.pack("!BHH", 22, 0x0303, 0xFFFF))
    with pytest.raises(EmptyRecordError):
        framer.scan(struct.pack("!BHH", 22, 0x0303, 0))


def test_scan_error_offset_recovers_good_records(framer: ModuleType) -> None:
    good = app_record(10) * 5
    with pytest.raises(RecordError) as info:
        framer.scan(good + b"GET / HTTP/1.1\r\n")
    assert info.value.offset == len(good)
    assert (
        len(framer.scan(good + b"GET / HTTP/1.1\r\n"[: info.value.offset - len(good)]).records) == 5
    )
    assert framer.scan((good + b"GET ")[: info.value.offset]).consumed == len(good)


# --------------------------------------------------------------------------
# scan: input types.


def _stream() -> bytes:
    return app_record(3) + record(b"\x01\x02", 21) + app_record(7)[:9]


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: memoryview(bytearray(b)),
        lambda b: memoryview(b"??" + b + b"??")[2:-2],
        lambda b: memoryview(b).toreadonly(),
    ],
    ids=["bytes", "bytearray", "memoryview", "mv-bytearray", "mv-slice", "mv-readonly"],
)
def test_scan_input_types(framer: ModuleType, make: object) -> None:
    assert callable(make)
    data = make(_stream())
    result = framer.scan(data)
    assert list(result.records) == [Record(APP, 0x0303, 0, 3), Record(21, 0x0301, 8, 2)]
    assert (result.consumed, result.partial, result.needed) == (15, 9, 3)


def test_scan_non_byte_memoryviews(framer: ModuleType) -> None:
    """A view of another format or shape is read as the bytes under it."""
    raw = app_record(3) + app_record(1)  # 14 bytes
    as_u16 = memoryview(array("H", struct.unpack("=7H", raw)))
    assert as_u16.format == "H" and as_u16.nbytes == 14
    as_2d = memoryview(raw).cast("B", (2, 7))
    as_chars = memoryview(raw).cast("c")
    strided = memoryview(bytes(b for c in raw for b in (c, 0)))[::2]
    assert not strided.c_contiguous
    expected = [Record(APP, 0x0303, 0, 3), Record(APP, 0x0303, 8, 1)]
    for view in (as_u16, as_2d, as_chars, strided):
        assert list(framer.scan(view).records) == expected


def test_scan_result_is_not_tied_to_input(framer: ModuleType) -> None:
    buf = bytearray(app_record(4) * 2)
    result = framer.scan(buf)
    buf[:] = b"\x00" * len(buf)
    buf.extend(b"grows fine: the scan holds no export")
    assert list(result.records) == [Record(APP, 0x0303, 0, 4), Record(APP, 0x0303, 9, 4)]


def test_scan_rejects_str(framer: ModuleType) -> None:
    with pytest.raises(TypeError):
        framer.scan("\x17\x03\x03\x00\x00")


# --------------------------------------------------------------------------
# RecordList and Record.


def test_record_list_sequence(framer: ModuleType) -> None:
    result = framer.scan(app_record(1) + app_record(2) + app_record(3))
    recs = result.records
    assert len(recs) == 3
    assert recs[-1] == Record(APP, 0x0303, 13, 3)
    assert recs[0:2] == [Record(APP, 0x0303, 0, 1), Record(APP, 0x0303, 6, 2)]
    assert [r.length for r in recs] == [1, 2, 3]
    assert recs == list(recs)
    assert recs != [Record(APP, 0x0303, 0, 1)]
    with pytest.raises(IndexError):
        recs[3]
    with pytest.raises(IndexError):
        recs[-4]
    assert "Record(content_type=23" in repr(recs)


# --------------------------------------------------------------------------
# ClientHello: well-formed.


def test_tls13_hello(framer: ModuleType) -> None:
    buf = tls13_hello("www.example.com", ("h2", "http/1.1"))
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "www.example.com"
    assert hello.alpn_protocols == ("h2", "http/1.1")
    assert hello.is_tls13
    assert hello.legacy_version == 0x0303
    assert hello.record_version == 0x0301
    assert hello.supported_versions == (0x0304, 0x0303)
    assert hello.supported_groups == GROUPS
    assert hello.signature_algorithms == SIGALGS
    assert hello.cipher_suites == TLS13_SUITES + TLS12_SUITES
    assert hello.compression_methods == b"\x00"
    assert hello.random == bytes(range(32))
    assert hello.session_id == bytes(range(100, 132))
    assert hello.session_id_length == 32
    assert hello.extensions == (0, 23, 65281, 10, 11, 16, 13, 51, 45, 43)
    assert hello.end == len(buf)
    assert hello.length == len(buf) - 9


def test_tls12_hello(framer: ModuleType) -> None:
    buf = tls12_hello("example.org", ("http/1.1",))
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "example.org"
    assert hello.alpn_protocols == ("http/1.1",)
    assert not hello.is_tls13
    assert hello.supported_versions == ()
    assert hello.cipher_suites == TLS12_SUITES
    assert hello.session_id == b""
    assert hello.extensions == (0, 10, 11, 13, 16, 35)


def test_hello_without_sni_or_alpn(framer: ModuleType) -> None:
    hello = framer.parse_client_hello(tls13_hello(None, ()))
    assert isinstance(hello, ClientHello)
    assert hello.server_name is None
    assert hello.alpn_protocols == ()
    assert 0 not in hello.extensions and 16 not in hello.extensions


def test_hello_without_extension_block(framer: ModuleType) -> None:
    """A TLS 1.0-era hello may stop after the compression methods."""
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=None)))
    assert isinstance(hello, ClientHello)
    assert hello.extensions == ()
    assert hello.supported_groups == ()
    assert hello.signature_algorithms == ()


def test_hello_with_empty_extension_block(framer: ModuleType) -> None:
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=[])))
    assert isinstance(hello, ClientHello)
    assert hello.extensions == ()


def test_hello_extension_order_and_unknown_types(framer: ModuleType) -> None:
    exts = [
        extension(0x0A0A, b""),  # GREASE
        versions_extension(0x7A7A, 0x0304),
        extension(0xFFFF, b"opaque"),
        alpn_extension("acme-tls/1"),
        sni_extension("a.b"),
        extension(21, bytes(100)),  # padding
        extension(0x1A1A, b"\x00"),
    ]
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=exts)))
    assert isinstance(hello, ClientHello)
    assert hello.extensions == (0x0A0A, 43, 0xFFFF, 16, 0, 21, 0x1A1A)
    assert hello.supported_versions == (0x7A7A, 0x0304)
    assert hello.is_tls13
    assert hello.server_name == "a.b"
    assert hello.alpn_protocols == ("acme-tls/1",)


def test_hello_many_extensions(framer: ModuleType) -> None:
    """More extensions than the C keeps inline (64): all of them, in order."""
    types = [1000 + 7 * i for i in range(300)]
    exts = [extension(t, b"") for t in types] + [sni_extension("many.example")]
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=exts)))
    assert isinstance(hello, ClientHello)
    assert hello.extensions == (*types, 0)
    assert hello.server_name == "many.example"


def test_hello_many_extensions_fragmented(framer: ModuleType) -> None:
    types = [2000 + i for i in range(100)]
    body = hello_body(extensions=[extension(t, b"x") for t in types])
    hello = framer.parse_client_hello(records(handshake(body), 37))
    assert isinstance(hello, ClientHello)
    assert hello.extensions == tuple(types)


def test_hello_sni_with_other_name_types(framer: ModuleType) -> None:
    """Unknown name types are skipped; the host_name entry is the answer."""
    entries = u8(7) + u16(3) + b"abc" + u8(0) + u16(6) + b"host.a" + u8(9) + u16(0)
    exts = [extension(0, u16(len(entries)) + entries)]
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=exts)))
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "host.a"


def test_hello_alpn_bytes_are_latin1(framer: ModuleType) -> None:
    exts = [alpn_extension(b"\xff\x00weird", b"h2")]
    hello = framer.parse_client_hello(hello_in_record(hello_body(extensions=exts)))
    assert isinstance(hello, ClientHello)
    assert hello.alpn_protocols == ("\xff\x00weird", "h2")


def test_hello_trailing_bytes_ignored(framer: ModuleType) -> None:
    buf = tls13_hello()
    hello = framer.parse_client_hello(buf + app_record(5) + b"garbage\x00\xff")
    assert isinstance(hello, ClientHello)
    assert hello.end == len(buf)


def test_hello_record_carries_more_than_the_hello(framer: ModuleType) -> None:
    """Bytes after the ClientHello inside its last record are not parsed."""
    body = hello_body(extensions=[sni_extension("x.y")])
    buf = record(handshake(body) + b"\x0f\x00\x00\x00")
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.length == len(body)
    assert hello.end == len(buf)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 64, 100, 200])
def test_hello_fragmented(framer: ModuleType, size: int) -> None:
    whole = tls13_hello("frag.example", ("h2",))
    expected = framer.parse_client_hello(whole)
    buf = tls13_hello("frag.example", ("h2",), sizes=size)
    assert buf.count(b"\x16\x03\x01") >= 2
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.end == len(buf)
    assert isinstance(expected, ClientHello)
    assert hello == dataclasses.replace(expected, end=len(buf))


def test_hello_fragmented_uneven(framer: ModuleType) -> None:
    payload = handshake(hello_body(extensions=tls13_extensions("uneven.example")))
    buf = records(payload, [1, 1, 1, 2, 200, 1, 50])
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "uneven.example"


def test_hello_record_version_is_the_first_records(framer: ModuleType) -> None:
    payload = handshake(hello_body())
    buf = record(payload[:10], HS, 0x0301) + record(payload[10:], HS, 0x0303)
    hello = framer.parse_client_hello(buf)
    assert isinstance(hello, ClientHello)
    assert hello.record_version == 0x0301


# --------------------------------------------------------------------------
# ClientHello: need more data.


@pytest.mark.parametrize("size", [None, 1, 3, 50])
def test_hello_need_data_at_every_cut(framer: ModuleType, size: int | None) -> None:
    buf = tls13_hello() if size is None else tls13_hello(sizes=size)
    for cut in range(len(buf)):
        result = framer.parse_client_hello(buf[:cut])
        assert isinstance(result, NeedData), cut
        # A lower bound: never asks for more than the rest of the hello.
        assert 1 <= result.needed <= len(buf) - cut, cut
    assert isinstance(framer.parse_client_hello(buf), ClientHello)


@pytest.mark.parametrize(
    ("data", "needed"),
    [
        (b"", 9),
        (b"\x16\x03", 7),
        (b"\x16\x03\x01\x00\x30", 48),
        (b"\x16\x03\x01\x00\x02\x01\x00", 7),  # header split: 2 more + header
        (b"\x16\x03\x01\x00\x04\x01\x00\x00\x30", 53),
    ],
)
def test_hello_need_data_values(framer: ModuleType, data: bytes, needed: int) -> None:
    assert framer.parse_client_hello(data) == NeedData(needed)


# --------------------------------------------------------------------------
# ClientHello: hostile and malformed input.


def hello_error(framer: ModuleType, buf: bytes, code: str, message: str | None = None) -> None:
    with pytest.raises(ClientHelloError) as info:
        framer.parse_client_hello(buf)
    assert info.value.code == code, str(info.value)
    if message is not None:
        assert str(info.value) == message


def test_hello_not_handshake(framer: ModuleType) -> None:
    hello_error(
        framer, record(b"\x02\x28", 21), "not_handshake", "first record is alert, not handshake"
    )
    hello_error(framer, record(b"", APP), "not_handshake")


def test_hello_not_client_hello(framer: ModuleType) -> None:
    hello_error(
        framer,
        record(handshake(b"\x03\x03", msg_type=2)),
        "not_client_hello",
        "first handshake message has type 2, not ClientHello (1)",
    )


def test_hello_not_client_hello_only_once_record_is_complete(framer: ModuleType) -> None:
    """Same order in both: the record is awaited before its bytes are judged."""
    assert framer.parse_client_hello(record(handshake(b"xx", msg_type=2))[:7]) == NeedData(4)


@pytest.mark.parametrize("declared", [MAX_CLIENT_HELLO_LENGTH + 1, 0xFFFFFF])
def test_hello_too_long(framer: ModuleType, declared: int) -> None:
    buf = record(u8(1) + u24(declared) + b"\x03\x03")
    hello_error(
        framer,
        buf,
        "too_long",
        f"ClientHello declares {declared} bytes, over the limit of {MAX_CLIENT_HELLO_LENGTH}",
    )


def test_hello_too_long_split_header(framer: ModuleType) -> None:
    payload = u8(1) + u24(0x123456)
    buf = b"".join(record(payload[i : i + 1]) for i in range(4))
    hello_error(framer, buf, "too_long")
    assert isinstance(framer.parse_client_hello(buf[:-6]), NeedData)


def test_hello_largest_allowed(framer: ModuleType) -> None:
    """A ClientHello of exactly 64 KiB, in 4+ records, parses."""
    pad = MAX_CLIENT_HELLO_LENGTH - len(hello_body(extensions=[extension(21, b"")]))
    body = hello_body(extensions=[extension(21, bytes(pad))])
    assert len(body) == MAX_CLIENT_HELLO_LENGTH
    hello = framer.parse_client_hello(records(handshake(body)))
    assert isinstance(hello, ClientHello)
    assert hello.length == MAX_CLIENT_HELLO_LENGTH


@pytest.mark.parametrize("ct", [20, 21, 23, 24])
def test_hello_interleaved(framer: ModuleType, ct: int) -> None:
    payload = handshake(hello_body())
    buf = record(payload[:20]) + record(b"\x01\x00", ct) + record(payload[20:])
    name = {20: "change_cipher_spec", 21: "alert", 23: "application_data", 24: "heartbeat"}
    hello_error(
        framer,
        buf,
        "interleaved",
        f"a {name[ct]} record arrived in the middle of the ClientHello",
    )


def test_hello_record_errors(framer: ModuleType) -> None:
    payload = handshake(hello_body())
    with pytest.raises(BadRecordVersionError) as info:
        framer.parse_client_hello(record(payload[:10]) + record(payload[10:], version=0x0202))
    assert info.value.offset == 15
    with pytest.raises(RecordOverflowError) as over:
        framer.parse_client_hello(struct.pack("!BHH", 22, 0x0301, 2**14 + 1))
    assert str(over.value) == "record at offset 0 is 16385 bytes long, over the limit of 16384"
    with pytest.raises(EmptyRecordError):
        framer.parse_client_hello(record(payload[:10]) + record(b""))
    with pytest.raises(UnknownContentTypeError):
        framer.parse_client_hello(bytes.fromhex("802e0103010015000000100000"))


def body_prefix(**kwargs: object) -> bytes:
    """A hello body up to (and including) the compression methods."""
    return hello_body(extensions=None, **kwargs)  # type: ignore[arg-type]


OVERRUNS = {
    "legacy_version": b"\x03",
    "random": b"\x03\x03" + bytes(31),
    "session_id-length": b"\x03\x03" + bytes(32),
    "session_id": b"\x03\x03" + bytes(32) + u8(32) + bytes(5),
    "cipher_suites-length": b"\x03\x03" + bytes(32) + u8(0) + b"\x13",
    "cipher_suites": b"\x03\x03" + bytes(32) + u8(0) + u16(0xFFFE) + b"\x13\x01",
    "compression_methods-length": b"\x03\x03" + bytes(32) + u8(0) + u16(2) + b"\x13\x01",
    "compression_methods": b"\x03\x03" + bytes(32) + u8(0) + u16(2) + b"\x13\x01" + u8(255),
    "extensions-length": body_prefix() + b"\x00",
    "extensions": body_prefix() + u16(0xFFFF) + bytes(10),
    "extension-header": body_prefix() + u16(3) + b"\x00\x00\x00",
    "extension": body_prefix() + u16(6) + u16(5) + u16(0xFFFF) + b"ab",
}


@pytest.mark.parametrize("case", sorted(OVERRUNS))
def test_hello_overruns(framer: ModuleType, case: str) -> None:
    field = case.split("-", maxsplit=1)[0]
    hello_error(
        framer,
        hello_in_record(OVERRUNS[case]),
        "overrun",
        f"ClientHello {field} runs past the end of its block",
    )


def _sni_raw(entries: bytes, list_length: int | None = None) -> bytes:
    n = len(entries) if list_length is None else list_length
    return extension(0, u16(n) + entries)


def _alpn_raw(entries: bytes, list_length: int | None = None) -> bytes:
    n = len(entries) if list_length is None else list_length
    return extension(16, u16(n) + entries)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "session_id-33": (b"\x03\x03" + bytes(32) + u8(33) + bytes(40), "session_id"),
    "cipher_suites-empty": (
        b"\x03\x03" + bytes(32) + u8(0) + u16(0) + b"\x01\x00",
        "cipher_suites",
    ),
    "cipher_suites-odd": (
        b"\x03\x03" + bytes(32) + u8(0) + u16(3) + b"\x13\x01\x13\x01\x00",
        "cipher_suites",
    ),
    "compression-empty": (
        b"\x03\x03" + bytes(32) + u8(0) + u16(2) + b"\x13\x01" + u8(0),
        "compression_methods",
    ),
    "extensions-short": (body_prefix() + u16(0) + b"\x00\x00\x00\x00", "message"),
    "extensions-trailing": (
        hello_body(extensions=[extension(21, b"")], extensions_length=2) + b"\x00\x00",
        "message",
    ),
    "sni-empty-extension": (body_prefix() + u16(4) + extension(0, b""), "server_name"),
    "sni-empty-list": (hello_body(extensions=[_sni_raw(b"")]), "server_name"),
    "sni-list-length-short": (
        hello_body(extensions=[_sni_raw(b"\x00\x00\x01a", 3)]),
        "server_name",
    ),
    "sni-list-length-ffff": (
        hello_body(extensions=[_sni_raw(b"\x00\x00\x01a", 0xFFFF)]),
        "server_name",
    ),
    "sni-entry-header-cut": (
        hello_body(extensions=[_sni_raw(b"\x00\x00\x01a\x00\x00")]),
        "server_name",
    ),
    "sni-name-overrun": (hello_body(extensions=[_sni_raw(b"\x00\xff\xffab")]), "server_name"),
    "sni-two-host-names": (hello_body(extensions=[sni_extension("a.b", "c.d")]), "server_name"),
    "sni-empty-name": (hello_body(extensions=[_sni_raw(b"\x00\x00\x00")]), "server_name"),
    "sni-space": (hello_body(extensions=[sni_extension(b"a b")]), "server_name"),
    "sni-nul": (hello_body(extensions=[sni_extension(b"a\x00b")]), "server_name"),
    "sni-utf8": (hello_body(extensions=[sni_extension("bücher.de".encode())]), "server_name"),
    "sni-no-host-name": (hello_body(extensions=[sni_extension("x", name_type=1)]), "server_name"),
    "alpn-empty-list": (hello_body(extensions=[_alpn_raw(b"")]), "alpn"),
    "alpn-empty-protocol": (hello_body(extensions=[_alpn_raw(b"\x02h2\x00")]), "alpn"),
    "alpn-overrun": (hello_body(extensions=[_alpn_raw(b"\x05h2")]), "alpn"),
    "alpn-list-length-ffff": (hello_body(extensions=[_alpn_raw(b"\x02h2", 0xFFFF)]), "alpn"),
    "alpn-one-byte": (hello_body(extensions=[extension(16, b"\x00")]), "alpn"),
    "versions-empty": (hello_body(extensions=[extension(43, b"")]), "supported_versions"),
    "versions-zero": (hello_body(extensions=[extension(43, b"\x00")]), "supported_versions"),
    "versions-odd": (
        hello_body(extensions=[extension(43, b"\x03\x03\x04\x03")]),
        "supported_versions",
    ),
    "versions-length-lies": (
        hello_body(extensions=[extension(43, b"\xff\x03\x04")]),
        "supported_versions",
    ),
    "groups-empty": (hello_body(extensions=[extension(10, u16(0))]), "supported_groups"),
    "groups-odd": (
        hello_body(extensions=[extension(10, u16(3) + b"\x00\x1d\x00")]),
        "supported_groups",
    ),
    "groups-ffff": (
        hello_body(extensions=[extension(10, u16(0xFFFF) + b"\x00\x1d")]),
        "supported_groups",
    ),
    "groups-one-byte": (hello_body(extensions=[extension(10, b"\x00")]), "supported_groups"),
    "sigalgs-empty": (hello_body(extensions=[extension(13, b"")]), "signature_algorithms"),
    "sigalgs-ffff": (
        hello_body(extensions=[extension(13, u16(0xFFFF) + b"\x04\x03")]),
        "signature_algorithms",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_hello_malformed(framer: ModuleType, case: str) -> None:
    body, field = MALFORMED[case]
    hello_error(framer, hello_in_record(body), "malformed", f"ClientHello {field} is malformed")


@pytest.mark.parametrize("etype", [0, 16, 43, 10, 13, 0xFFFF, 21])
def test_hello_duplicate_extension(framer: ModuleType, etype: int) -> None:
    one = {
        0: sni_extension("a.b"),
        16: alpn_extension("h2"),
        43: versions_extension(0x0304),
        10: groups_extension(0x1D),
        13: sigalgs_extension(0x0403),
    }.get(etype, extension(etype, b""))
    body = hello_body(extensions=[one, extension(99, b""), one])
    hello_error(
        framer,
        hello_in_record(body),
        "duplicate_extension",
        f"ClientHello repeats extension {etype}",
    )


def test_hello_error_precedence(framer: ModuleType) -> None:
    """Problems are found in wire order: the first one wins."""
    bad_sni = _sni_raw(b"")
    dup = extension(7, b"")
    hello_error(framer, hello_in_record(hello_body(extensions=[bad_sni, dup, dup])), "malformed")
    hello_error(
        framer, hello_in_record(hello_body(extensions=[dup, dup, bad_sni])), "duplicate_extension"
    )
    # A lying extensions length is found before any extension is read.
    body = hello_body(extensions=[bad_sni], extensions_length=100)
    hello_error(framer, hello_in_record(body), "overrun")
    # session_id length over 32 is malformed even when the bytes are missing too.
    hello_error(framer, hello_in_record(b"\x03\x03" + bytes(32) + u8(200)), "malformed")
    # A zero-length cipher suite list is malformed before its absence overruns.
    hello_error(framer, hello_in_record(b"\x03\x03" + bytes(32) + u8(0) + u16(0)), "malformed")


def test_hello_declared_length_shorter_than_body(framer: ModuleType) -> None:
    """The handshake length decides where the body ends, not the record."""
    body = hello_body(extensions=[sni_extension("a.b")])
    buf = record(handshake(body, length=len(body) - 3) + b"\x00" * 3)
    hello_error(framer, buf, "overrun", "ClientHello extensions runs past the end of its block")


def test_hello_zero_length_body(framer: ModuleType) -> None:
    hello_error(framer, record(handshake(b"")), "overrun")


# --------------------------------------------------------------------------
# Not TLS: what it looks like, and how it is shown.

SNIFFED = [
    (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "http-request",
        "peer sent plaintext, looks like HTTP: b'GET / HTTP/1.1\\r\\n'",
    ),
    (
        b"POST /api HTTP/1.1\r\n",
        "http-request",
        "peer sent plaintext, looks like HTTP: b'POST /api HTTP/1.1\\r\\n'",
    ),
    (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "http-request",
        "peer sent plaintext, looks like HTTP: b'PRI * HTTP/2.0\\r\\n'",
    ),
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "http-response",
        "peer sent plaintext, looks like an HTTP response: b'HTTP/1.1 400 Bad Request\\r\\n'",
    ),
    (
        b"220 mail.example.com ESMTP Postfix\r\n",
        "smtp",
        "peer sent plaintext, looks like SMTP: b'220 mail.example.com ESMTP Postf'",
    ),
    (b"EHLO client.example\r\n", "smtp", None),
    (b"MAIL FROM:<a@example.com>\r\n", "smtp", None),
    (
        b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
        "imap",
        "peer sent plaintext, looks like IMAP: b'* OK [CAPABILITY IMAP4rev1] Dove'",
    ),
    (
        b"a001 CAPABILITY\r\n",
        "imap",
        "peer sent plaintext, looks like IMAP: b'a001 CAPABILITY\\r\\n'",
    ),
    (b"A1 STARTTLS\r\n", "imap", None),
    (
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
        "pop3",
        "peer sent plaintext, looks like POP3: b'+OK POP3 server ready <1896.6971'",
    ),
    (b"CAPA\r\n", "pop3", None),
    (b"STLS\r\n", "pop3", None),
    (
        b"220 (vsFTPd 3.0.3)\r\n",
        "ftp",
        "peer sent plaintext, looks like FTP: b'220 (vsFTPd 3.0.3)\\r\\n'",
    ),
    (b"220-ProFTPD 1.3.8 Server ready.\r\n", "ftp", None),
    (b"AUTH TLS\r\n", "ftp", "peer sent plaintext, looks like FTP: b'AUTH TLS\\r\\n'"),
    (b"FEAT\r\n", "ftp", None),
    (
        b"USER anonymous\r\n",
        "pop3-or-ftp",
        "peer sent plaintext, looks like POP3 or FTP: b'USER anonymous\\r\\n'",
    ),
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", "ssh", None),
    (b"200 news.example.com ready\r\n", "nntp", None),
    (b"<?xml version='1.0'?><stream:stream>", "xmpp", None),
    (
        bytes.fromhex("802e0103010015000000100000050000040100800300800700c0"),
        "sslv2",
        "peer sent an SSL 2.0 ClientHello; SSL 2.0 and 3.0 are obsolete and not accepted: "
        "b'\\x80.\\x01\\x03\\x01\\x00\\x15\\x00\\x00\\x00\\x10\\x00\\x00\\x05\\x00\\x00"
        "\\x04\\x01\\x00\\x80\\x03\\x00\\x80\\x07\\x00\\xc0'",
    ),
    (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n\x16\x03\x01",
        "proxy-v1",
        "peer sent a PROXY protocol v1 header before TLS (a load balancer configured to send "
        "PROXY headers to a port that does not expect them?): b'PROXY TCP4 192.0.2.1 198.51.100.'",
    ),
    (
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01",
        "proxy-v2",
        "peer sent a PROXY protocol v2 header before TLS (a load balancer configured to send "
        "PROXY headers to a port that does not expect them?): "
        "b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n!\\x11\\x00\\x0c\\xc0\\x00\\x02\\x01'",
    ),
    (
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        "postgres",
        "peer sent a PostgreSQL SSLRequest, not TLS: b'\\x00\\x00\\x00\\x08\\x04\\xd2\\x16/'",
    ),
    (b"hello there\n", "text", "peer sent plaintext, not TLS: b'hello there\\n'"),
    (b"\r\n\r\n", "text", "peer sent plaintext, not TLS: b'\\r\\n'"),
    (
        b"\x00\x01\n\x02\xff",
        "unknown",
        "peer did not send TLS (first byte 0x00 is not a TLS record type): "
        "b'\\x00\\x01\\n\\x02\\xff'",
    ),
    (
        b"\x16\x04\x01\x00\x05",
        "unknown",
        "peer did not send TLS (record type 0x16 is followed by version major 0x04, not 0x03): "
        "b'\\x16\\x04\\x01\\x00\\x05'",
    ),
]


@pytest.mark.parametrize(("data", "kind", "message"), SNIFFED, ids=[k for _, k, _ in SNIFFED])
def test_not_tls(data: bytes, kind: str, message: str | None) -> None:
    assert sniff(data).kind == kind
    error = not_tls_error(data)
    assert isinstance(error, NotTLSError)
    assert error.kind == kind
    assert error.first_bytes == data[:32]
    if message is not None:
        assert str(error) == message
    # Whatever the kind, a framer refuses the bytes with a typed error.
    assert not records_pkg.is_tls_start(data)


@pytest.mark.parametrize(
    "data", [b"", b"\x16", b"\x16\x03", b"\x17\x03\x03\x00\x10", tls13_hello()[:3]]
)
def test_tls_is_not_flagged(data: bytes) -> None:
    assert not_tls_error(data) is None
    assert sniff(data).kind in ("tls", "empty")


def test_sniff_memoryview_of_other_format() -> None:
    raw = b"GET / HTTP/1.1\r\n"
    view = memoryview(array("H", struct.unpack("=8H", raw)))
    error = not_tls_error(view)
    assert error is not None
    assert error.first_bytes == raw
    assert str(error) == "peer sent plaintext, looks like HTTP: b'GET / HTTP/1.1\\r\\n'"


def test_shown_bytes() -> None:
    assert shown_bytes(b"EHLO x\r\nMAIL FROM:<a>\r\n") == b"EHLO x\r\n"
    assert shown_bytes(b"a" * 100) == b"a" * 32
    assert shown_bytes(b"\x00\n\x01", lines=False) == b"\x00\n\x01"
    # The message escapes what it shows: no terminal control bytes get out.
    error = not_tls_error(b"\x1b[2J\x1b]0;pwned\x07 hello")
    assert error is not None
    assert "\x1b" not in str(error) and "\\x1b" in str(error)
