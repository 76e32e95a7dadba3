"""Types, limits and error messages shared by the C and the Python framer.

Both implementations return these types and raise through :func:`raise_scan_error`
and :func:`raise_hello_error`, so the same input gives the same result and the
same message whichever one runs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, overload

from ..errors import (
    BadRecordVersionError,
    ClientHelloError,
    EmptyRecordError,
    RecordError,
    RecordOverflowError,
    UnknownContentTypeError,
)

if TYPE_CHECKING:
    from array import array

#: Bytes in a record header: type (1), legacy version (2), length (2).
HEADER_LENGTH = 5

#: RFC 8446 5.2: a TLS 1.3 ciphertext record may carry at most 2^14 + 256 bytes.
MAX_TLS13_CIPHERTEXT = 2**14 + 256

#: RFC 5246 6.2.3: a TLS 1.2 ciphertext record may carry at most 2^14 + 2048
#: bytes.  This is the scanner's default limit: before the version is known,
#: the looser of the two is the one a conforming peer may use.
MAX_TLS12_CIPHERTEXT = 2**14 + 2048

#: The largest ClientHello we agree to buffer.  Real ones, post-quantum key
#: shares and many PSK identities included, stay under 8 KiB; 64 KiB leaves
#: room for growth while bounding what an attacker can make us hold before a
#: single certificate is chosen.
MAX_CLIENT_HELLO_LENGTH = 2**16


class ContentType(enum.IntEnum):
    """TLS record content types (RFC 8446 B.1, RFC 6520)."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23
    heartbeat = 24


def content_type_name(value: int) -> str:
    """``"handshake"`` for 22; ``"type 99"`` for a value TLS does not define."""
    try:
        return ContentType(value).name
    except ValueError:
        return f"type {value}"


class Record(NamedTuple):
    """One complete TLS record found by :func:`scan`."""

    #: Content type (see :class:`ContentType`).
    content_type: int
    #: Legacy record version, e.g. ``0x0303``.
    version: int
    #: Offset of the record header in the scanned buffer.
    offset: int
    #: Length of the record body (without the 5-byte header).
    length: int

    @property
    def payload_offset(self) -> int:
        """Offset of the record body in the scanned buffer."""
        return self.offset + HEADER_LENGTH

    @property
    def end(self) -> int:
        """Offset just past the record."""
        return self.offset + HEADER_LENGTH + self.length


class RecordList(Sequence[Record]):
    """The records of a scan, stored four integers per record.

    Building one Python object per record would cost more than finding the
    record in C, so the scan fills a flat ``array('q')`` and a
    :class:`Record` is made only when one is looked at.
    """

    __slots__ = ("_data",)

    def __init__(self, data: array[int]) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data) >> 2

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("record index out of range")
        d = self._data
        i = index << 2
        return Record(d[i], d[i + 1], d[i + 2], d[i + 3])

    def __iter__(self) -> Iterator[Record]:
        d = self._data
        for i in range(0, len(d), 4):
            yield Record(d[i], d[i + 1], d[i + 2], d[i + 3])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordList):
            return self._data == other._data
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordList({list(self)!r})"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What :func:`scan` found in a buffer."""

    #: The complete records, in order.
    records: RecordList
    #: Bytes covered by the complete records (offset just past the last one).
    consumed: int
    #: Bytes of a trailing incomplete record (0 if the buffer ends on a
    #: record boundary).
    partial: int
    #: More bytes needed to complete that trailing record: ``5 - partial``
    #: while its header is incomplete, the rest of the record after that;
    #: 0 when there is no partial record.
    needed: int


@dataclass(frozen=True, slots=True)
class NeedData:
    """:func:`parse_client_hello` needs more bytes before it can answer."""

    #: A lower bound on how many more bytes are needed.
    needed: int


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The fields of a ClientHello that servers route and choose on."""

    #: ``legacy_version`` of the ClientHello (0x0303 for TLS 1.2 and 1.3).
    legacy_version: int
    #: Legacy version of the first record that carried it.
    record_version: int
    #: The 32-byte client random.
    random: bytes
    #: The legacy session id (0-32 bytes).
    session_id: bytes
    #: Cipher suite code points, in the client's order.
    cipher_suites: tuple[int, ...]
    #: Compression methods (always ``b"\\x00"`` from a modern client).
    compression_methods: bytes
    #: Extension types in the order the client sent them.
    extensions: tuple[int, ...]
    #: The SNI host name, or ``None`` if the client sent none.
    server_name: str | None
    #: ALPN protocol names, in the client's order.
    alpn_protocols: tuple[str, ...]
    #: ``supported_versions`` entries (empty if the extension is absent).
    supported_versions: tuple[int, ...]
    #: ``supported_groups`` entries.
    supported_groups: tuple[int, ...]
    #: ``signature_algorithms`` entries.
    signature_algorithms: tuple[int, ...]
    #: Length of the handshake message body.
    length: int
    #: Offset just past the last record that carried the ClientHello.
    end: int

    @property
    def session_id_length(self) -> int:
        """Length of the legacy session id."""
        return len(self.session_id)

    @property
    def is_tls13(self) -> bool:
        """True if the client offers TLS 1.3 (in ``supported_versions``)."""
        return 0x0304 in self.supported_versions


# --------------------------------------------------------------------------
# Errors.  Codes are small integers so the C framer can report them; the
# messages are made here only, so both implementations say the same words.

SCAN_OK = 0
SCAN_UNKNOWN_CONTENT_TYPE = 1
SCAN_BAD_VERSION = 2
SCAN_RECORD_OVERFLOW = 3
SCAN_EMPTY_RECORD = 4


def raise_scan_error(code: int, offset: int, value: int, max_length: int) -> RecordError:
    """Build the exception for a scan error code (the caller raises it)."""
    if code == SCAN_UNKNOWN_CONTENT_TYPE:
        return UnknownContentTypeError(
            f"record at offset {offset} has content type {value}, "
            "which TLS does not define (expected 20-24)",
            offset=offset,
            value=value,
        )
    if code == SCAN_BAD_VERSION:
        return BadRecordVersionError(
            f"record at offset {offset} has version 0x{value:04x}; "
            "TLS records have major version 3",
            offset=offset,
            value=value,
        )
    if code == SCAN_RECORD_OVERFLOW:
        return RecordOverflowError(
            f"record at offset {offset} is {value} bytes long, over the limit of {max_length}",
            offset=offset,
            value=value,
        )
    if code == SCAN_EMPTY_RECORD:
        return EmptyRecordError(
            f"record at offset {offset} is an empty {content_type_name(value)} "
            "record, which TLS forbids",
            offset=offset,
            value=value,
        )
    raise AssertionError(f"unknown scan error code {code}")


HELLO_NOT_HANDSHAKE = 1
HELLO_NOT_CLIENT_HELLO = 2
HELLO_TOO_LONG = 3
HELLO_INTERLEAVED = 4
HELLO_OVERRUN = 5
HELLO_MALFORMED = 6
HELLO_DUPLICATE_EXTENSION = 7

#: Field numbers used with HELLO_OVERRUN and HELLO_MALFORMED.
HELLO_FIELDS = (
    "legacy_version",
    "random",
    "session_id",
    "cipher_suites",
    "compression_methods",
    "extensions",
    "extension",
    "server_name",
    "alpn",
    "supported_versions",
    "supported_groups",
    "signature_algorithms",
    "message",
)
F_LEGACY_VERSION = 0
F_RANDOM = 1
F_SESSION_ID = 2
F_CIPHER_SUITES = 3
F_COMPRESSION = 4
F_EXTENSIONS = 5
F_EXTENSION = 6
F_SERVER_NAME = 7
F_ALPN = 8
F_SUPPORTED_VERSIONS = 9
F_SUPPORTED_GROUPS = 10
F_SIGNATURE_ALGORITHMS = 11
F_MESSAGE = 12


def raise_hello_error(code: int, value: int) -> ClientHelloError:
    """Build the exception for a ClientHello error code (the caller raises it).

    ``value`` is the content type, handshake type, length, field number or
    extension type the code is about.
    """
    if code == HELLO_NOT_HANDSHAKE:
        return ClientHelloError(
            f"first record is {content_type_name(value)}, not handshake",
            code="not_handshake",
        )
    if code == HELLO_NOT_CLIENT_HELLO:
        return ClientHelloError(
            f"first handshake message has type {value}, not ClientHello (1)",
            code="not_client_hello",
        )
    if code == HELLO_TOO_LONG:
        return ClientHelloError(
            f"ClientHello declares {value} bytes, over the limit of {MAX_CLIENT_HELLO_LENGTH}",
            code="too_long",
        )
    if code == HELLO_INTERLEAVED:
        return ClientHelloError(
            f"a {content_type_name(value)} record arrived in the middle of the ClientHello",
            code="interleaved",
        )
    if code == HELLO_OVERRUN:
        return ClientHelloError(
            f"ClientHello {HELLO_FIELDS[value]} runs past the end of its block",
            code="overrun",
        )
    if code == HELLO_MALFORMED:
        return ClientHelloError(f"ClientHello {HELLO_FIELDS[value]} is malformed", code="malformed")
    if code == HELLO_DUPLICATE_EXTENSION:
        return ClientHelloError(
            f"ClientHello repeats extension {value}", code="duplicate_extension"
        )
    raise AssertionError(f"unknown ClientHello error code {code}")
