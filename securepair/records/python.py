"""The pure-Python record framer: the reference the C twin must match.

Every branch here has a twin in ``csrc/framer.c``; the differential tests and
fuzzers hold the two to the same records, the same errors and the same
messages.  Change both or neither.
"""

from __future__ import annotations

import struct
from array import array

from ..errors import RecordError
from ._common import (
    F_ALPN,
    F_CIPHER_SUITES,
    F_COMPRESSION,
    F_EXTENSION,
    F_EXTENSIONS,
    F_LEGACY_VERSION,
    F_MESSAGE,
    F_RANDOM,
    F_SERVER_NAME,
    F_SESSION_ID,
    F_SIGNATURE_ALGORITHMS,
    F_SUPPORTED_GROUPS,
    F_SUPPORTED_VERSIONS,
    HEADER_LENGTH,
    HELLO_DUPLICATE_EXTENSION,
    HELLO_INTERLEAVED,
    HELLO_MALFORMED,
    HELLO_NOT_CLIENT_HELLO,
    HELLO_NOT_HANDSHAKE,
    HELLO_OVERRUN,
    HELLO_TOO_LONG,
    MAX_CLIENT_HELLO_LENGTH,
    MAX_TLS12_CIPHERTEXT,
    SCAN_BAD_VERSION,
    SCAN_EMPTY_RECORD,
    SCAN_RECORD_OVERFLOW,
    SCAN_UNKNOWN_CONTENT_TYPE,
    ClientHello,
    NeedData,
    RecordList,
    ScanResult,
    raise_hello_error,
    raise_scan_error,
)

IMPLEMENTATION = "python"

BufferLike = bytes | bytearray | memoryview

_HEADER = struct.Struct("!BHH")

#: RFC 8446 5.1: a plaintext record fragment is at most 2^14 bytes, and a
#: ClientHello travels in plaintext records.
MAX_PLAINTEXT = 2**14


def _as_bytes_view(buf: BufferLike) -> memoryview:
    mv = memoryview(buf)
    if not mv.c_contiguous:
        # A strided view (``mv[::2]``) has no flat bytes to read in place.
        # It is rare enough that a copy is the right price; the C framer
        # does the same.
        return memoryview(mv.tobytes())
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def _check_header(ct: int, version: int, length: int, pos: int, max_length: int) -> None:
    code = 0
    value = 0
    if not 20 <= ct <= 24:
        code, value = SCAN_UNKNOWN_CONTENT_TYPE, ct
    elif version >> 8 != 3:
        code, value = SCAN_BAD_VERSION, version
    elif length > max_length:
        code, value = SCAN_RECORD_OVERFLOW, length
    elif length == 0 and ct <= 22:
        code, value = SCAN_EMPTY_RECORD, ct
    if code:
        raise raise_scan_error(code, pos, value, max_length)


def scan(buf: BufferLike, max_length: int = MAX_TLS12_CIPHERTEXT) -> ScanResult:
    """Find the complete TLS records in ``buf``.

    Every complete header is validated, including the header of a trailing
    partial record, so a bad stream fails as soon as five bytes of the bad
    record have arrived.  Raises a :class:`~securepair.errors.RecordError`
    subclass on the first invalid header; ``offset`` on the error says where.
    """
    mv = _as_bytes_view(buf)
    n = mv.nbytes
    out = array("q")
    extend = out.extend
    unpack_from = _HEADER.unpack_from
    pos = 0
    while n - pos >= HEADER_LENGTH:
        ct, version, length = unpack_from(mv, pos)
        # The common case (a known type, major version 3, a length in range)
        # is one chained comparison each; the slow path names the problem.
        # The second test lets through the empty records TLS allows
        # (application_data, heartbeat) and nothing else: exactly what
        # _check_header accepts, so the two paths cannot disagree.
        if not (20 <= ct <= 24 and version >> 8 == 3 and 0 < length <= max_length) and not (
            length == 0 and 22 < ct <= 24 and version >> 8 == 3 and max_length >= 0
        ):
            try:
                _check_header(ct, version, length, pos, max_length)
            except RecordError:
                # The traceback keeps this frame, and with it the view, alive:
                # end the export now, or a handler could not resize a
                # bytearray it passed in (found by tests/test_tamper.py).
                mv.release()
                raise
        end = pos + HEADER_LENGTH + length
        if end > n:
            return ScanResult(RecordList(out), pos, n - pos, end - n)
        extend((ct, version, pos, length))
        pos = end
    partial = n - pos
    return ScanResult(RecordList(out), pos, partial, HEADER_LENGTH - partial if partial else 0)


class _Hello(Exception):
    """Internal: carries a ClientHello error code out of the nested parse."""

    def __init__(self, code: int, value: int) -> None:
        self.code = code
        self.value = value


def parse_client_hello(buf: BufferLike) -> ClientHello | NeedData:
    """Parse the ClientHello at the start of ``buf``.

    The ClientHello may span several handshake records.  Returns
    :class:`NeedData` until all of it has arrived; raises
    :class:`~securepair.errors.RecordError` for a bad record header and
    :class:`~securepair.errors.ClientHelloError` for a malformed message.
    Bytes after the ClientHello's last record are not looked at.
    """
    mv = _as_bytes_view(buf)
    try:
        return _parse_client_hello(mv)
    finally:
        # Whatever happened, end the export of the caller's buffer here:
        # a raised error's traceback would otherwise keep it (see scan).
        mv.release()


def _parse_client_hello(mv: memoryview) -> ClientHello | NeedData:
    n = mv.nbytes
    hs = bytearray()
    pos = 0
    first_version = -1
    while True:
        have = n - pos
        if have < HEADER_LENGTH:
            if len(hs) >= 4:
                rest = 4 + int.from_bytes(hs[1:4], "big") - len(hs)
            else:
                rest = 4 - len(hs)
            return NeedData(HEADER_LENGTH + rest - have)
        ct, version, length = _HEADER.unpack_from(mv, pos)
        _check_header(ct, version, length, pos, MAX_PLAINTEXT)
        if ct != 22:
            if first_version < 0:
                raise raise_hello_error(HELLO_NOT_HANDSHAKE, ct)
            raise raise_hello_error(HELLO_INTERLEAVED, ct)
        if first_version < 0:
            first_version = version
        end = pos + HEADER_LENGTH + length
        if end > n:
            return NeedData(end - n)
        hs += mv[pos + HEADER_LENGTH : end]
        pos = end
        if hs[0] != 1:
            raise raise_hello_error(HELLO_NOT_CLIENT_HELLO, hs[0])
        if len(hs) >= 4:
            declared = int.from_bytes(hs[1:4], "big")
            if declared > MAX_CLIENT_HELLO_LENGTH:
                raise raise_hello_error(HELLO_TOO_LONG, declared)
            if len(hs) >= 4 + declared:
                break
    try:
        return _parse_body(memoryview(hs)[4 : 4 + declared], first_version, pos)
    except _Hello as e:
        raise raise_hello_error(e.code, e.value) from None


def _u16_list(data: memoryview, start: int, length: int) -> tuple[int, ...]:
    return struct.unpack_from(f"!{length // 2}H", data, start)


def _parse_body(body: memoryview, record_version: int, end: int) -> ClientHello:
    size = len(body)
    p = 0

    def need(count: int, field: int) -> None:
        if p + count > size:
            raise _Hello(HELLO_OVERRUN, field)

    need(2, F_LEGACY_VERSION)
    legacy_version = (body[0] << 8) | body[1]
    p = 2
    need(32, F_RANDOM)
    random = bytes(body[p : p + 32])
    p += 32
    need(1, F_SESSION_ID)
    sid_len = body[p]
    p += 1
    if sid_len > 32:
        raise _Hello(HELLO_MALFORMED, F_SESSION_ID)
    need(sid_len, F_SESSION_ID)
    session_id = bytes(body[p : p + sid_len])
    p += sid_len
    need(2, F_CIPHER_SUITES)
    cs_len = (body[p] << 8) | body[p + 1]
    p += 2
    if cs_len == 0 or cs_len & 1:
        raise _Hello(HELLO_MALFORMED, F_CIPHER_SUITES)
    need(cs_len, F_CIPHER_SUITES)
    cipher_suites = _u16_list(body, p, cs_len)
    p += cs_len
    need(1, F_COMPRESSION)
    comp_len = body[p]
    p += 1
    if comp_len == 0:
        raise _Hello(HELLO_MALFORMED, F_COMPRESSION)
    need(comp_len, F_COMPRESSION)
    compression = bytes(body[p : p + comp_len])
    p += comp_len

    extensions: list[int] = []
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    sigalgs: tuple[int, ...] = ()
    if p < size:
        need(2, F_EXTENSIONS)
        ext_total = (body[p] << 8) | body[p + 1]
        p += 2
        need(ext_total, F_EXTENSIONS)
        if p + ext_total != size:
            raise _Hello(HELLO_MALFORMED, F_MESSAGE)
        seen: set[int] = set()
        while p < size:
            need(4, F_EXTENSION)
            etype = (body[p] << 8) | body[p + 1]
            elen = (body[p + 2] << 8) | body[p + 3]
            p += 4
            need(elen, F_EXTENSION)
            if etype in seen:
                raise _Hello(HELLO_DUPLICATE_EXTENSION, etype)
            seen.add(etype)
            extensions.append(etype)
            ext = body[p : p + elen]
            p += elen
            if etype == 0:
                server_name = _parse_sni(ext)
            elif etype == 16:
                alpn = _parse_alpn(ext)
            elif etype == 43:
                if elen < 1 or ext[0] != elen - 1 or ext[0] < 2 or ext[0] & 1:
                    raise _Hello(HELLO_MALFORMED, F_SUPPORTED_VERSIONS)
                versions = _u16_list(ext, 1, elen - 1)
            elif etype == 10:
                groups = _u16_vector(ext, F_SUPPORTED_GROUPS)
            elif etype == 13:
                sigalgs = _u16_vector(ext, F_SIGNATURE_ALGORITHMS)
    return ClientHello(
        legacy_version=legacy_version,
        record_version=record_version,
        random=random,
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression,
        extensions=tuple(extensions),
        server_name=server_name,
        alpn_protocols=alpn,
        supported_versions=versions,
        supported_groups=groups,
        signature_algorithms=sigalgs,
        length=size,
        end=end,
    )


def _u16_vector(ext: memoryview, field: int) -> tuple[int, ...]:
    elen = len(ext)
    if elen < 2:
        raise _Hello(HELLO_MALFORMED, field)
    vlen = (ext[0] << 8) | ext[1]
    if vlen != elen - 2 or vlen == 0 or vlen & 1:
        raise _Hello(HELLO_MALFORMED, field)
    return _u16_list(ext, 2, vlen)


def _parse_sni(ext: memoryview) -> str:
    elen = len(ext)
    if elen < 2 or ((ext[0] << 8) | ext[1]) != elen - 2 or elen == 2:
        raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
    q = 2
    name: str | None = None
    while q < elen:
        if q + 3 > elen:
            raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
        ntype = ext[q]
        nlen = (ext[q + 1] << 8) | ext[q + 2]
        q += 3
        if q + nlen > elen:
            raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
        if ntype == 0:
            # RFC 6066 3: one name per type; host names are ASCII (A-labels).
            if name is not None or nlen == 0:
                raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
            raw = bytes(ext[q : q + nlen])
            if any(b < 0x21 or b > 0x7E for b in raw):
                raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
            name = raw.decode("ascii")
        q += nlen
    if name is None:
        raise _Hello(HELLO_MALFORMED, F_SERVER_NAME)
    return name


def _parse_alpn(ext: memoryview) -> tuple[str, ...]:
    elen = len(ext)
    if elen < 2 or ((ext[0] << 8) | ext[1]) != elen - 2 or elen == 2:
        raise _Hello(HELLO_MALFORMED, F_ALPN)
    q = 2
    names: list[str] = []
    while q < elen:
        plen = ext[q]
        q += 1
        if plen == 0 or q + plen > elen:
            raise _Hello(HELLO_MALFORMED, F_ALPN)
        names.append(bytes(ext[q : q + plen]).decode("latin-1"))
        q += plen
    return tuple(names)


__all__ = ["IMPLEMENTATION", "scan", "parse_client_hello", "RecordError"]
