"""Fixtures and builders for the record framer tests (a pytest plugin).

``framer`` runs a test once with each implementation, so the C framer and
its Python twin answer to one suite and cannot drift.  The C one is skipped
locally when it was not built (with the reason) and fails under CI, where
``SECUREPAIR_BUILD_EXT=yes`` must have built it.

The builders make TLS records and ClientHellos byte by byte, with every
length field overridable, so tests can say exactly which length lies.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest

from securepair.records import python as python_framer

from ._tools import IN_CI

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import ModuleType

IMPLEMENTATIONS = ("c", "python")


def load_c_framer() -> ModuleType:
    """``securepair.records.c``, or skip (locally) / fail (CI, or a stale build)."""
    try:
        from securepair.records import c
    except ImportError as exc:
        if IN_CI or getattr(exc, "mismatch", False):
            pytest.fail(f"the C framer does not load: {exc}", pytrace=False)
        pytest.skip(f"the C framer is not built ({exc}); build it with pip install -e .")
    return c


@pytest.fixture(params=IMPLEMENTATIONS)
def framer(request: pytest.FixtureRequest) -> ModuleType:
    """Each record framer in turn: ``securepair.records.c``, then ``.python``."""
    if request.param == "c":
        return load_c_framer()
    return python_framer


@pytest.fixture(scope="module")
def c_framer() -> ModuleType:
    """The C framer alone (for differential tests against the Python twin)."""
    return load_c_framer()


# --------------------------------------------------------------------------
# Records.


def record(
    payload: bytes, content_type: int = 22, version: int = 0x0301, length: int | None = None
) -> bytes:
    """One TLS record; ``length`` overrides the header's length field."""
    declared = len(payload) if length is None else length
    return struct.pack("!BHH", content_type, version, declared) + payload


def records(
    payload: bytes,
    sizes: Iterable[int] | int = 2**14,
    content_type: int = 22,
    version: int = 0x0301,
) -> bytes:
    """``payload`` cut into records: every ``sizes`` bytes, or at the given sizes
    (the last record takes whatever is left)."""
    out = bytearray()
    pos = 0
    if isinstance(sizes, int):
        step = sizes
        while pos < len(payload):
            out += record(payload[pos : pos + step], content_type, version)
            pos += step
        return bytes(out)
    for size in sizes:
        if pos >= len(payload):
            break
        out += record(payload[pos : pos + size], content_type, version)
        pos += size
    if pos < len(payload):
        out += record(payload[pos:], content_type, version)
    return bytes(out)


# --------------------------------------------------------------------------
# ClientHello pieces.


def u8(n: int) -> bytes:
    return bytes([n])


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def u16_list(values: Sequence[int]) -> bytes:
    return b"".join(u16(v) for v in values)


def extension(etype: int, data: bytes, length: int | None = None) -> bytes:
    """An extension: type, length (overridable), data."""
    return u16(etype) + u16(len(data) if length is None else length) + data


def sni_extension(*names: bytes | str, name_type: int = 0) -> bytes:
    """server_name (0) with one entry per name."""
    entries = b""
    for name in names:
        raw = name.encode("ascii") if isinstance(name, str) else name
        entries += u8(name_type) + u16(len(raw)) + raw
    return extension(0, u16(len(entries)) + entries)


def alpn_extension(*protocols: bytes | str) -> bytes:
    """application_layer_protocol_negotiation (16)."""
    entries = b""
    for proto in protocols:
        raw = proto.encode("latin-1") if isinstance(proto, str) else proto
        entries += u8(len(raw)) + raw
    return extension(16, u16(len(entries)) + entries)


def versions_extension(*versions: int) -> bytes:
    """supported_versions (43), ClientHello form: a one-byte length."""
    body = u16_list(versions)
    return extension(43, u8(len(body)) + body)


def groups_extension(*groups: int) -> bytes:
    """supported_groups (10)."""
    body = u16_list(groups)
    return extension(10, u16(len(body)) + body)


def sigalgs_extension(*algs: int) -> bytes:
    """signature_algorithms (13)."""
    body = u16_list(algs)
    return extension(13, u16(len(body)) + body)


TLS13_SUITES = (0x1301, 0x1302, 0x1303)
TLS12_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0x009E, 0x00FF)
GROUPS = (0x001D, 0x0017, 0x0018)
SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501)
RANDOM = bytes(range(32))


def hello_body(
    *,
    legacy_version: int = 0x0303,
    random: bytes = RANDOM,
    session_id: bytes = b"",
    cipher_suites: Sequence[int] = TLS13_SUITES + TLS12_SUITES,
    compression: bytes = b"\x00",
    extensions: Sequence[bytes] | None = (),
    extensions_length: int | None = None,
) -> bytes:
    """A ClientHello body.  ``extensions=None`` leaves the block out entirely
    (as a TLS 1.0 client may); ``extensions_length`` makes its length lie."""
    body = u16(legacy_version) + random + u8(len(session_id)) + session_id
    suites = u16_list(cipher_suites)
    body += u16(len(suites)) + suites + u8(len(compression)) + compression
    if extensions is not None:
        block = b"".join(extensions)
        body += u16(len(block) if extensions_length is None else extensions_length) + block
    return body


def handshake(body: bytes, msg_type: int = 1, length: int | None = None) -> bytes:
    """A handshake message: type, 24-bit length (overridable), body."""
    return u8(msg_type) + u24(len(body) if length is None else length) + body


def tls13_extensions(
    server_name: str | None = "example.com", alpn: Sequence[str] = ("h2", "http/1.1")
) -> list[bytes]:
    """The extensions of a typical TLS 1.3 ClientHello, in a browser's order."""
    exts = []
    if server_name is not None:
        exts.append(sni_extension(server_name))
    exts += [
        extension(23, b""),  # extended_master_secret
        extension(65281, b"\x00"),  # renegotiation_info
        groups_extension(*GROUPS),
        extension(11, b"\x01\x00"),  # ec_point_formats
    ]
    if alpn:
        exts.append(alpn_extension(*alpn))
    exts += [
        sigalgs_extension(*SIGALGS),
        extension(51, u16(36) + u16(0x001D) + u16(32) + bytes(32)),  # key_share
        extension(45, b"\x01\x01"),  # psk_key_exchange_modes
        versions_extension(0x0304, 0x0303),
    ]
    return exts


def tls13_hello(
    server_name: str | None = "example.com",
    alpn: Sequence[str] = ("h2", "http/1.1"),
    *,
    sizes: Iterable[int] | int = 2**14,
    session_id: bytes = bytes(range(100, 132)),
) -> bytes:
    """A whole TLS 1.3-style ClientHello in records (cut at ``sizes``)."""
    body = hello_body(session_id=session_id, extensions=tls13_extensions(server_name, alpn))
    return records(handshake(body), sizes)


def tls12_hello(
    server_name: str | None = "example.org", alpn: Sequence[str] = ("http/1.1",)
) -> bytes:
    """A TLS 1.2-only ClientHello (no supported_versions) in one record."""
    exts = []
    if server_name is not None:
        exts.append(sni_extension(server_name))
    exts += [groups_extension(*GROUPS), extension(11, b"\x01\x00"), sigalgs_extension(*SIGALGS)]
    if alpn:
        exts.append(alpn_extension(*alpn))
    exts.append(extension(35, b""))  # session_ticket
    body = hello_body(cipher_suites=TLS12_SUITES, extensions=exts)
    return record(handshake(body))


def hello_in_record(body: bytes, *, version: int = 0x0301) -> bytes:
    """``body`` as a ClientHello in a single record."""
    return record(handshake(body), version=version)
