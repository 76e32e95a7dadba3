"""TLS record framing: find records, parse a ClientHello, spot a non-TLS peer.

Two implementations with one interface: a C framer built by cffi from
``csrc/`` and a pure-Python twin.  :data:`IMPLEMENTATION` says which one
this module exports; both stay importable on their own as
``securepair.records.c`` (when built) and ``securepair.records.python``.

Set ``SECUREPAIR_FRAMER=python`` in the environment to force the Python twin
at run time (for comparison or debugging).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from ..errors import (
    BadRecordVersionError,
    ClientHelloError,
    EmptyRecordError,
    NotTLSError,
    RecordError,
    RecordOverflowError,
    UnknownContentTypeError,
)
from . import python
from ._common import (
    HEADER_LENGTH,
    MAX_CLIENT_HELLO_LENGTH,
    MAX_TLS12_CIPHERTEXT,
    MAX_TLS13_CIPHERTEXT,
    ClientHello,
    ContentType,
    NeedData,
    Record,
    RecordList,
    ScanResult,
    content_type_name,
)
from ._sniff import Sniff, is_tls_start, not_tls_error, shown_bytes, sniff

if TYPE_CHECKING:
    from .python import BufferLike

__all__ = [
    "IMPLEMENTATION",
    "scan",
    "parse_client_hello",
    "sniff",
    "not_tls_error",
    "is_tls_start",
    "shown_bytes",
    "Sniff",
    "ScanResult",
    "Record",
    "RecordList",
    "ClientHello",
    "NeedData",
    "ContentType",
    "content_type_name",
    "HEADER_LENGTH",
    "MAX_TLS12_CIPHERTEXT",
    "MAX_TLS13_CIPHERTEXT",
    "MAX_CLIENT_HELLO_LENGTH",
    "RecordError",
    "UnknownContentTypeError",
    "BadRecordVersionError",
    "RecordOverflowError",
    "EmptyRecordError",
    "ClientHelloError",
    "NotTLSError",
]


class _Framer(Protocol):
    """What each framer module provides; both modules are checked against it."""

    @property
    def IMPLEMENTATION(self) -> str: ...
    def scan(self, buf: BufferLike, max_length: int = ...) -> ScanResult: ...
    def parse_client_hello(self, buf: BufferLike) -> ClientHello | NeedData: ...


def _choose() -> _Framer:
    if os.environ.get("SECUREPAIR_FRAMER", "auto") == "python":
        return python
    try:
        from . import c
    except ImportError as exc:
        # A build without the C framer (SECUREPAIR_BUILD_EXT=no, or auto
        # without a compiler) warned once when it was built; here the twin
        # is simply used.  A framer that exists but was built for another
        # version of the package refuses to load and is not papered over.
        if os.environ.get("SECUREPAIR_FRAMER") == "c" or getattr(exc, "mismatch", False):
            raise
        return python
    return c


_impl = _choose()
IMPLEMENTATION: str = _impl.IMPLEMENTATION
scan = _impl.scan
parse_client_hello = _impl.parse_client_hello
