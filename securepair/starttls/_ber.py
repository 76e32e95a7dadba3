"""A minimal, strict BER codec for the LDAP messages of StartTLS.

LDAP uses a restricted BER (RFC 4511 5.1): definite lengths only, primitive
OCTET STRINGs only, BOOLEAN TRUE as ``0xFF``.  This codec handles exactly
what the StartTLS exchange and its refusals need -- INTEGER, ENUMERATED,
BOOLEAN, OCTET STRING, SEQUENCE/SET and context/application tags with
low tag numbers -- and refuses everything else:

* indefinite lengths, lengths of more than four bytes, lengths that run
  past their enclosing value;
* high tag numbers (LDAP never uses them);
* INTEGERs that are empty, longer than needed (``00 01``) or out of range;
* BOOLEANs other than ``00`` and ``FF``;
* trailing bytes inside a constructed value.

Long-form lengths that are not minimal (``84 00 00 00 05``) are accepted
because OpenLDAP's liblber writes them; BER allows them.
"""

from __future__ import annotations

__all__ = [
    "BERError",
    "Reader",
    "tlv",
    "integer",
    "enumerated",
    "boolean",
    "octets",
    "sequence",
    "read_length",
    "header_length",
]

#: Largest length accepted: four length bytes.
_MAX_LENGTH_BYTES = 4


class BERError(ValueError):
    """The bytes are not the strict BER LDAP uses."""


def read_length(data: bytes | bytearray | memoryview, i: int, end: int) -> tuple[int, int] | None:
    """``(length, index after the length)`` of the length at ``data[i]``,
    or ``None`` if ``data[:end]`` ends before it does."""
    if i >= end:
        return None
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    if count == 0:
        raise BERError("indefinite length (LDAP allows definite lengths only)")
    if count > _MAX_LENGTH_BYTES:
        raise BERError(f"a length of {count} bytes")
    if i + 1 + count > end:
        return None
    return int.from_bytes(bytes(data[i + 1 : i + 1 + count]), "big"), i + 1 + count


def header_length(
    data: bytes | bytearray | memoryview, i: int, end: int
) -> tuple[int, int, int] | None:
    """``(tag, content start, content end)`` of the value at ``data[i]``
    (the content may not all be there yet), or ``None`` if even the header
    is incomplete."""
    if i >= end:
        return None
    tag = data[i]
    if tag & 0x1F == 0x1F:
        raise BERError("a high tag number (LDAP does not use them)")
    length = read_length(data, i + 1, end)
    if length is None:
        return None
    size, start = length
    return tag, start, start + size


class Reader:
    """Reads the values inside one complete constructed value."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek_tag(self) -> int | None:
        """The next value's tag, or ``None`` at the end."""
        return None if self.at_end() else self.data[self.pos]

    def read(self, expected: int | None = None) -> tuple[int, bytes, int, int]:
        """``(tag, content, content start, content end)`` of the next value."""
        header = header_length(self.data, self.pos, self.end)
        if header is None:
            raise BERError("a value is cut short")
        tag, start, stop = header
        if stop > self.end:
            raise BERError("a value runs past its container")
        if expected is not None and tag != expected:
            raise BERError(f"expected tag 0x{expected:02x}, got 0x{tag:02x}")
        self.pos = stop
        return tag, self.data[start:stop], start, stop

    def sub(self, expected: int) -> Reader:
        """A reader over the next constructed value, which must have tag
        ``expected``."""
        if not expected & 0x20:
            raise BERError(f"tag 0x{expected:02x} is not constructed")
        _, _, start, stop = self.read(expected)
        return Reader(self.data, start, stop)

    def integer(self, expected: int = 0x02, *, maximum: int = 2**31 - 1) -> int:
        """An INTEGER (or ENUMERATED with ``expected=0x0a``) in 0..maximum."""
        _, content, _, _ = self.read(expected)
        return parse_integer(content, maximum)

    def boolean(self, expected: int = 0x01) -> bool:
        _, content, _, _ = self.read(expected)
        if content == b"\xff":
            return True
        if content == b"\x00":
            return False
        raise BERError("a BOOLEAN that is not 00 or FF")

    def octets(self, expected: int = 0x04) -> bytes:
        """An OCTET STRING (primitive, as LDAP requires)."""
        if expected & 0x20:
            raise BERError("constructed OCTET STRINGs are not allowed in LDAP")
        return self.read(expected)[1]

    def done(self) -> None:
        """Require that nothing is left."""
        if not self.at_end():
            raise BERError(f"{self.end - self.pos} unexpected bytes at the end of a value")


def parse_integer(content: bytes, maximum: int = 2**31 - 1) -> int:
    """A non-negative INTEGER's value, minimal encoding required."""
    if not content:
        raise BERError("an empty INTEGER")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise BERError("an INTEGER that is not minimally encoded")
    value = int.from_bytes(content, "big", signed=True)
    if not 0 <= value <= maximum:
        raise BERError(f"an INTEGER out of range: {value}")
    return value


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """One value: tag, minimal length, content."""
    return bytes((tag,)) + _length(len(content)) + content


def integer(value: int, tag: int = 0x02) -> bytes:
    """An INTEGER (non-negative), minimal encoding."""
    if value < 0:
        raise ValueError("negative INTEGERs are not needed here")
    size = value.bit_length() // 8 + 1
    return tlv(tag, value.to_bytes(size, "big"))


def enumerated(value: int) -> bytes:
    """An ENUMERATED."""
    return integer(value, 0x0A)


def boolean(value: bool) -> bytes:
    """A BOOLEAN (``FF`` for TRUE, as LDAP requires)."""
    return tlv(0x01, b"\xff" if value else b"\x00")


def octets(value: bytes, tag: int = 0x04) -> bytes:
    """An OCTET STRING (or an implicitly tagged one)."""
    return tlv(tag, value)


def sequence(*values: bytes, tag: int = 0x30) -> bytes:
    """A SEQUENCE (or SET, or any constructed tag) of encoded values."""
    return tlv(tag, b"".join(values))
