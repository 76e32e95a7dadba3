"""The C record framer: thin wrappers over ``csrc/framer.c``.

The C finds records and checks every length; this module turns its integer
results into the types of :mod:`securepair.records._common` and its error
codes into the exceptions, through the same functions the Python twin uses,
so both framers return and raise the same things.

Importing this module fails with :class:`ImportError` when the extension was
not built (``SECUREPAIR_BUILD_EXT=no``, or no compiler); it fails with an
``ImportError`` whose ``mismatch`` attribute is true when the extension was
built from another version of the package, which a rebuild fixes.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

from .._version import __version__
from ._common import (
    MAX_TLS12_CIPHERTEXT,
    ClientHello,
    NeedData,
    RecordList,
    ScanResult,
    raise_hello_error,
    raise_scan_error,
)

try:
    from ._cframer import ffi, lib
except ImportError as exc:  # not built: records/__init__.py falls back quietly
    raise ImportError(f"the C record framer is not built: {exc}") from exc

IMPLEMENTATION = "c"


def _compiled_version() -> str:
    raw = ffi.string(lib.sp_version())
    return raw.decode("ascii") if isinstance(raw, bytes) else raw


#: The package version the extension was compiled for.
COMPILED_VERSION = _compiled_version()


class FramerVersionMismatch(ImportError):
    """The compiled framer belongs to another version of the package.

    ``securepair.records`` re-raises this instead of falling back to the
    Python twin: a stale build is a mistake to fix, not a missing compiler.
    """

    #: What ``securepair.records`` looks for.
    mismatch = True


if __version__ != COMPILED_VERSION:
    raise FramerVersionMismatch(
        f"securepair.records._cframer was built for securepair {COMPILED_VERSION}, "
        f"but this is securepair {__version__}; rebuild it "
        "(pip install -e . or python csrc/build_framer.py)"
    )

BufferLike = bytes | bytearray | memoryview

_HEADER = 5
_ZERO = array("q", [0])
_QUADS = ffi.typeof("int64_t[]")
_from_buffer = ffi.from_buffer
_release = ffi.release
_scan = lib.sp_scan
_SUMMARY = lib.SP_SCAN_SUMMARY
_R_POS = lib.SP_R_POS
_R_COUNT = lib.SP_R_COUNT
_R_PARTIAL = lib.SP_R_PARTIAL
_R_NEEDED = lib.SP_R_NEEDED
_R_ERROR = lib.SP_R_ERROR
_R_ERROR_OFFSET = lib.SP_R_ERROR_OFFSET
_R_ERROR_VALUE = lib.SP_R_ERROR_VALUE
#: Records room is made for on the first call: a socket read rarely holds
#: more, and a bigger array costs more to make and trim than the call.  A
#: buffer with more records gets a second call, with room guessed from the
#: density of the first.
_FIRST_ROOM = 8
_SCAN_FULL = lib.SP_SCAN_FULL
_SCAN_ERROR = lib.SP_SCAN_ERROR
_HELLO_OK = lib.SP_HELLO_OK
_HELLO_NEED_DATA = lib.SP_HELLO_NEED_DATA
_HELLO_RECORD_ERROR = lib.SP_HELLO_RECORD_ERROR
_HELLO_NEED_SCRATCH = lib.SP_HELLO_NEED_SCRATCH
_INLINE_EXTENSIONS = lib.SP_INLINE_EXTENSIONS
_MAX_PLAINTEXT = lib.SP_MAX_PLAINTEXT


def _byte_source(buf: memoryview) -> BufferLike:
    # Same normalisation as the Python twin: the framer works on bytes,
    # whatever the item format or shape of the view.
    if buf.format != "B" or buf.ndim != 1 or not buf.c_contiguous:
        return buf.cast("B") if buf.c_contiguous else buf.tobytes()
    return buf


def scan(buf: BufferLike, max_length: int = MAX_TLS12_CIPHERTEXT) -> ScanResult:
    """Find the complete TLS records in ``buf``.

    Same contract as :func:`securepair.records.python.scan`: records, bytes
    consumed, the size of a trailing partial record and how much it still
    needs; a :class:`~securepair.errors.RecordError` subclass for the first
    bad header (including that of a trailing partial record).  ``buf`` is not
    copied.
    """
    src: Any
    if type(buf) is bytes:
        src = buf  # cffi passes a bytes object's own storage: no export needed
    elif type(buf) is memoryview:
        src = _from_buffer(_byte_source(buf))
    else:
        src = _from_buffer(buf)
    n = len(src)
    # The C compares with an int64: any limit at or above the largest
    # 16-bit length behaves like 0xFFFF, any negative one like -1.
    limit = max_length if -1 <= max_length <= 0xFFFF else (0xFFFF if max_length > 0 else -1)
    most = n // _HEADER  # no stream holds more records than this
    room = most if most < _FIRST_ROOM else _FIRST_ROOM
    # Room for the records, then the C's summary of the call (framer.h).
    quads = _ZERO * (4 * room + _SUMMARY)
    out = _from_buffer(_QUADS, quads, True)
    rc = _scan(src, n, 0, limit, out, room)
    _release(out)  # end the buffer export, so that the array may be resized
    at = 4 * room
    filled = quads[at + _R_COUNT]
    pos = quads[at + _R_POS]
    while rc == _SCAN_FULL:
        # Guess what is left from the density so far, at least doubling (so
        # that a stream whose records shrink still takes few calls) and
        # never past the bound.
        room = min(max((n - pos) * filled // pos + 16, filled), (n - pos) // _HEADER)
        del quads[4 * filled :]
        quads.extend(_ZERO * (4 * room + _SUMMARY))
        out = _from_buffer(_QUADS, quads, True)
        rc = _scan(src, n, pos, limit, out + 4 * filled, room)
        _release(out)
        at = 4 * (filled + room)
        filled += quads[at + _R_COUNT]
        pos = quads[at + _R_POS]
    if rc == _SCAN_ERROR:
        if src is not buf:
            # The traceback keeps this frame alive: end the export now, or a
            # handler could not resize the bytearray it passed in.
            _release(src)
        raise raise_scan_error(
            quads[at + _R_ERROR],
            quads[at + _R_ERROR_OFFSET],
            quads[at + _R_ERROR_VALUE],
            max_length,
        )
    partial = quads[at + _R_PARTIAL]
    needed = quads[at + _R_NEEDED]
    del quads[4 * filled :]
    return ScanResult(RecordList(quads), pos, partial, needed)


def _u16s(data: memoryview, offset: int, length: int) -> tuple[int, ...]:
    if offset < 0:
        return ()
    return struct.unpack_from(f"!{length >> 1}H", data, offset)


def parse_client_hello(buf: BufferLike) -> ClientHello | NeedData:
    """Parse the ClientHello at the start of ``buf``.

    Same contract as :func:`securepair.records.python.parse_client_hello`:
    :class:`NeedData` until the whole message (possibly spread over several
    handshake records) has arrived, a :class:`~securepair.errors.RecordError`
    for a bad record header, a :class:`~securepair.errors.ClientHelloError`
    for a malformed message.
    """
    src = _from_buffer(_byte_source(buf) if type(buf) is memoryview else buf)
    n = len(src)
    h: Any = ffi.new("struct sp_hello *")
    rc = lib.sp_parse_client_hello(src, n, ffi.NULL, 0, h)
    scratch = None
    if rc == _HELLO_NEED_SCRATCH:
        # A fragmented ClientHello, all of it present: the C joins the
        # fragments into room sized by bytes that have arrived.
        scratch = ffi.new("uint8_t[]", h.needed)
        rc = lib.sp_parse_client_hello(src, n, scratch, len(scratch), h)
    if rc != _HELLO_OK:
        if rc == _HELLO_NEED_DATA:
            return NeedData(h.needed)
        _release(src)  # as in scan: the traceback would keep the export
        if rc == _HELLO_RECORD_ERROR:
            raise raise_scan_error(h.error, h.error_offset, h.error_value, _MAX_PLAINTEXT)
        raise raise_hello_error(h.error, h.error_value)

    body_src = scratch if scratch is not None and h.gathered else src
    data = memoryview(ffi.buffer(body_src))
    count = h.extension_count
    if count <= _INLINE_EXTENSIONS:
        extensions = tuple(h.extension_types[0:count])
    else:
        types = ffi.new("uint16_t[]", count)
        lib.sp_hello_extension_types(body_src, h, types, count)
        extensions = tuple(types)
    server_name = None
    if h.server_name >= 0:
        start = h.server_name
        server_name = bytes(data[start : start + h.server_name_length]).decode("ascii")
    alpn: list[str] = []
    if h.alpn >= 0:
        q = h.alpn
        end = q + h.alpn_length
        while q < end:
            size = data[q]
            alpn.append(bytes(data[q + 1 : q + 1 + size]).decode("latin-1"))
            q += 1 + size
    random = h.random
    sid = h.session_id
    comp = h.compression
    return ClientHello(
        legacy_version=h.legacy_version,
        record_version=h.record_version,
        random=bytes(data[random : random + 32]),
        session_id=bytes(data[sid : sid + h.session_id_length]),
        cipher_suites=_u16s(data, h.cipher_suites, h.cipher_suites_length),
        compression_methods=bytes(data[comp : comp + h.compression_length]),
        extensions=extensions,
        server_name=server_name,
        alpn_protocols=tuple(alpn),
        supported_versions=_u16s(data, h.supported_versions, h.supported_versions_length),
        supported_groups=_u16s(data, h.supported_groups, h.supported_groups_length),
        signature_algorithms=_u16s(data, h.signature_algorithms, h.signature_algorithms_length),
        length=h.length,
        end=h.end,
    )


__all__ = [
    "IMPLEMENTATION",
    "COMPILED_VERSION",
    "FramerVersionMismatch",
    "scan",
    "parse_client_hello",
]
