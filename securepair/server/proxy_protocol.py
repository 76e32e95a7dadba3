"""HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): a sans-IO parser.

A load balancer that passes TCP through (HAProxy, nginx ``stream``, AWS NLB,
stunnel with ``protocol = proxy``) puts one header in front of the
connection's first byte, naming the client it accepted.  ``securepair serve``
reads that header, then the TLS ClientHello that follows it.  The
specification is https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt.

Theory of operation
===================

:func:`parse_proxy_header` takes every byte received so far and answers one
of three things:

* ``None``: not enough bytes yet; call again with more (the same bytes and
  what followed them).
* a :class:`ProxyHeader`; its ``length`` says where the header ends, and
  the bytes from there on (the ClientHello, usually) belong to TLS.  They
  are never looked at.
* :class:`ProxyProtocolError`: these bytes are not a valid header and no
  further bytes can make them one.

The answer is decided as early as the bytes allow.  A connection that does
not begin with a prefix of ``PROXY `` or of the v2 signature is refused at
its first wrong byte, so a TLS client that skipped the load balancer gets
an error at once, not a timeout.  A v1 line with a character that cannot
appear in it, a v2 header with a bad version, command or family, or a
length over the limit is refused as soon as that byte arrives.

The parser keeps no state: call it again with the grown buffer.  Each call
looks at no more than :data:`MAX_HEADER_LENGTH` bytes (4112), and given that
many it always decides: a transport never needs to buffer more than that
before it has its answer.

Limits
------

Version 1 lines are at most 107 bytes with the CRLF (the specification's
own worst case, ``PROXY UNKNOWN`` with two full IPv6 addresses).

Version 2 declares its length in a 16-bit field, so a peer could make a
receiver wait for and buffer 64 KiB before TLS even starts.  Real headers
are small: addresses take 216 bytes at most (AF_UNIX), and the TLVs that
HAProxy sends (ALPN, authority, unique ID up to 128 bytes, the TLS
summary) fit easily in 4 KiB.  :data:`V2_MAX_PAYLOAD` is therefore 4096
and a header that declares more is refused when its length field arrives.

Strictness
----------

Addresses and ports are checked, not just split: ports are decimal 0 to
65535 without leading zeros, v1 addresses must parse and match their
family, v2 families and transports must be among those the specification
defines, the address block must be as long as the family needs, and TLVs
must not run past the header.  ``PROXY UNKNOWN`` (v1) and LOCAL (v2) mean
"use the real connection's addresses": both give ``source`` and
``destination`` of None.  The CRC32C TLV is kept, not verified.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER_LENGTH",
    "PP2_TYPE_ALPN",
    "PP2_TYPE_AUTHORITY",
    "PP2_TYPE_CRC32C",
    "PP2_TYPE_NETNS",
    "PP2_TYPE_NOOP",
    "PP2_TYPE_SSL",
    "PP2_TYPE_UNIQUE_ID",
    "ProxyHeader",
    "ProxyProtocolError",
    "V1_MAX_LENGTH",
    "V1_PREFIX",
    "V2_MAX_PAYLOAD",
    "V2_SIGNATURE",
    "build_v1",
    "build_v2",
    "looks_like_proxy_header",
    "parse_proxy_header",
]

#: The first six bytes of every version 1 header.
V1_PREFIX = b"PROXY "
#: The first twelve bytes of every version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line, CRLF included (from the specification).
V1_MAX_LENGTH = 107
#: The most address and TLV bytes a version 2 header may declare here.
V2_MAX_PAYLOAD = 4096
#: The longest header this parser accepts, of either version.
MAX_HEADER_LENGTH = 16 + V2_MAX_PAYLOAD

#: Some TLV types of version 2 (the specification lists them all).
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30

# How much of the offending input an error shows and keeps.
_SHOWN = 32

# v2 family-and-transport byte -> (name, length of the address block).
_V2_FAMILIES = {
    0x00: ("UNSPEC", 0),
    0x11: ("TCP4", 12),
    0x12: ("UDP4", 12),
    0x21: ("TCP6", 36),
    0x22: ("UDP6", 36),
    0x31: ("UNIX", 216),
    0x32: ("UNIX_DGRAM", 216),
}
_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}

# The bytes a v1 TCP line may hold between "PROXY " and CRLF.  IPv6 allows
# dots for the embedded IPv4 form (::ffff:192.0.2.1).
_V1_CHARS = {
    b"TCP4": b"TCP4 0123456789.",
    b"TCP6": b"TCP6 0123456789abcdefABCDEF:.",
}
_V1_FAMILY_STARTS = (b"TCP4 ", b"TCP6 ", b"UNKNOWN\r", b"UNKNOWN ")

_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"CONNECT ")


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header, or not one at all.

    ``first_bytes`` holds the first bytes received (up to 32); the message
    ends with them, shown with :func:`repr`.
    """

    def __init__(self, message: str, first_bytes: bytes) -> None:
        super().__init__(message)
        self.first_bytes = bytes(first_bytes[:_SHOWN])


def _show(data: bytes) -> str:
    shown = repr(data[:_SHOWN])
    return shown + "..." if len(data) > _SHOWN else shown


def _not_a_header(data: bytes) -> ProxyProtocolError:
    hint = ""
    if data[:1] == b"\x16":
        hint = " (a TLS handshake?)"
    elif any(method.startswith(data[: len(method)]) for method in _HTTP_METHODS):
        hint = " (an HTTP request?)"
    return ProxyProtocolError(f"expected a PROXY protocol header, got {_show(data)}{hint}", data)


def _bad(version: int, reason: str, data: bytes) -> ProxyProtocolError:
    return ProxyProtocolError(
        f"bad PROXY protocol v{version} header: {reason}; it began {_show(data)}", data
    )


@dataclass(frozen=True, kw_only=True)
class ProxyHeader:
    """A parsed PROXY protocol header."""

    version: int
    """1 (the text form) or 2 (the binary form)."""

    command: str
    """``"PROXY"``: the connection was relayed for the client named in
    ``source``.  ``"LOCAL"``: the proxy made it on its own (a health
    check), or a v1 ``PROXY UNKNOWN``; use the connection's own addresses."""

    family: str
    """``"TCP4"``, ``"TCP6"``, ``"UDP4"``, ``"UDP6"``, ``"UNIX"`` (stream),
    ``"UNIX_DGRAM"`` or ``"UNSPEC"`` (v1 ``UNKNOWN`` reads as ``"UNSPEC"``)."""

    source: tuple[str, int] | None
    """The client: address (normalised, as :mod:`ipaddress` writes it) and
    port; for UNIX the path and 0.  None for LOCAL and UNSPEC."""

    destination: tuple[str, int] | None
    """The address and port the client connected to, like ``source``."""

    length: int
    """How many bytes the header took: the TLS bytes start at this offset."""

    tlvs: tuple[tuple[int, bytes], ...] = ()
    """Version 2 type-length-value extensions as ``(type, value)``, in order;
    always empty for version 1."""

    def tlv(self, type_: int) -> bytes | None:
        """The value of the first TLV of type ``type_`` (for example
        :data:`PP2_TYPE_AUTHORITY`), or None."""
        for found, value in self.tlvs:
            if found == type_:
                return value
        return None


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return bytes(view[:MAX_HEADER_LENGTH])


def looks_like_proxy_header(data: bytes | bytearray | memoryview) -> bool | None:
    """Does the connection begin with a PROXY protocol header?

    True once ``data`` holds the whole v1 prefix ``PROXY `` or the whole v2
    signature, False as soon as it cannot be either, None while it is too
    short to tell.  For a server that takes connections with and without
    the header; a TLS connection is told apart at its first byte.
    """
    head = _as_bytes(data)[: len(V2_SIGNATURE)]
    for magic in (V1_PREFIX, V2_SIGNATURE):
        n = min(len(head), len(magic))
        if head[:n] == magic[:n]:
            return True if n == len(magic) else None
    return False


def parse_proxy_header(data: bytes | bytearray | memoryview) -> ProxyHeader | None:
    """Parse the PROXY protocol header at the start of ``data``.

    Returns the header, or None if more bytes are needed to decide (call
    again with all the bytes so far and more).  Raises
    :class:`ProxyProtocolError` as soon as the bytes cannot begin a valid
    header.  Bytes after the header (``header.length`` onwards) are not
    examined.
    """
    buf = _as_bytes(data)
    if not buf:
        return None
    if buf[0] == V1_PREFIX[0]:
        return _parse_v1(buf)
    if buf[0] == V2_SIGNATURE[0]:
        return _parse_v2(buf)
    raise _not_a_header(buf)


def _parse_v1(buf: bytes) -> ProxyHeader | None:
    n = min(len(buf), len(V1_PREFIX))
    if buf[:n] != V1_PREFIX[:n]:
        raise _not_a_header(buf)
    if len(buf) == n and n < len(V1_PREFIX):
        return None
    end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
    rest = buf[len(V1_PREFIX) : end if end >= 0 else V1_MAX_LENGTH]
    if not any(rest[: len(start)] == start[: len(rest)] for start in _V1_FAMILY_STARTS):
        word = rest.partition(b" ")[0].partition(b"\r")[0][:16]
        raise _bad(1, f"unknown family {word!r} (TCP4, TCP6 or UNKNOWN)", buf)
    chars = _V1_CHARS.get(rest[:4])
    if chars is not None:
        # A trailing CR may be the first half of the CRLF still to come.
        body = rest[:-1] if end < 0 and rest.endswith(b"\r") else rest
        # translate() deletes the allowed bytes: anything left is wrong.
        for index, byte in enumerate(body if body.translate(None, chars) else b""):
            if byte in b"\r\n":
                raise _bad(1, "the line must end with CRLF, not a lone CR or LF", buf)
            if byte not in chars:
                raise _bad(
                    1,
                    f"byte {bytes([byte])!r} at offset {len(V1_PREFIX) + index} "
                    f"cannot appear in a {rest[:4].decode()} line",
                    buf,
                )
    if end < 0:
        if len(buf) >= V1_MAX_LENGTH:
            raise _bad(1, f"no CRLF within {V1_MAX_LENGTH} bytes", buf)
        return None
    length = end + 2
    if rest.startswith(b"UNKNOWN"):
        # The specification: ignore whatever follows UNKNOWN on the line.
        return ProxyHeader(
            version=1,
            command="LOCAL",
            family="UNSPEC",
            source=None,
            destination=None,
            length=length,
        )
    fields = rest.split(b" ")
    if len(fields) != 5:
        raise _bad(
            1,
            f"{len(fields) - 1} fields after the family, expected 4 "
            "(source address, destination address, source port, destination port, "
            "one space apart)",
            buf,
        )
    family = fields[0].decode()
    source = _v1_address(family, "source", fields[1], buf)
    destination = _v1_address(family, "destination", fields[2], buf)
    source_port = _v1_port("source", fields[3], buf)
    destination_port = _v1_port("destination", fields[4], buf)
    return ProxyHeader(
        version=1,
        command="PROXY",
        family=family,
        source=(source, source_port),
        destination=(destination, destination_port),
        length=length,
    )


def _v1_address(family: str, which: str, field: bytes, buf: bytes) -> str:
    text = field.decode()
    try:
        if family == "TCP4":
            return str(ipaddress.IPv4Address(text))
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        kind = "IPv4" if family == "TCP4" else "IPv6"
        raise _bad(1, f"{which} address {text!r} is not an {kind} address", buf) from None


def _v1_port(which: str, field: bytes, buf: bytes) -> int:
    if not field.isdigit() or len(field) > 5:
        raise _bad(1, f"{which} port {field.decode()!r} is not a number from 0 to 65535", buf)
    if len(field) > 1 and field[0] == ord("0"):
        raise _bad(1, f"{which} port {field.decode()!r} has a leading zero", buf)
    port = int(field)
    if port > 65535:
        raise _bad(1, f"{which} port {port} is over 65535", buf)
    return port


def _parse_v2(buf: bytes) -> ProxyHeader | None:
    n = min(len(buf), len(V2_SIGNATURE))
    if buf[:n] != V2_SIGNATURE[:n]:
        raise _not_a_header(buf)
    if len(buf) <= len(V2_SIGNATURE):
        return None
    version_command = buf[12]
    if version_command >> 4 != 2:
        raise _bad(2, f"version {version_command >> 4} in byte 13 (0x{version_command:02x})", buf)
    command = _V2_COMMANDS.get(version_command & 0x0F)
    if command is None:
        raise _bad(2, f"command {version_command & 0x0F} (0 LOCAL or 1 PROXY)", buf)
    if len(buf) < 14:
        return None
    family_byte = buf[13]
    if family_byte not in _V2_FAMILIES:
        raise _bad(2, f"address family and transport 0x{family_byte:02x}", buf)
    family, address_length = _V2_FAMILIES[family_byte]
    if len(buf) < 16:
        return None
    declared = int.from_bytes(buf[14:16], "big")
    if declared > V2_MAX_PAYLOAD:
        raise _bad(
            2,
            f"length {declared} is over the {V2_MAX_PAYLOAD} bytes accepted here "
            "(addresses and TLVs need far less; the limit stops a peer from making "
            "the server buffer 64 KiB before TLS starts)",
            buf,
        )
    if declared < address_length:
        raise _bad(
            2, f"length {declared} is shorter than the {address_length} bytes {family} needs", buf
        )
    length = 16 + declared
    if len(buf) < length:
        return None
    block = buf[16:length]
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    if command == "PROXY":
        source, destination = _v2_addresses(family, block)
    return ProxyHeader(
        version=2,
        command=command,
        family=family,
        source=source,
        destination=destination,
        length=length,
        tlvs=_v2_tlvs(block, address_length, buf),
    )


def _v2_addresses(
    family: str, block: bytes
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    if family in ("TCP4", "UDP4"):
        return (
            (str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big")),
            (str(ipaddress.IPv4Address(block[4:8])), int.from_bytes(block[10:12], "big")),
        )
    if family in ("TCP6", "UDP6"):
        return (
            (str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big")),
            (str(ipaddress.IPv6Address(block[16:32])), int.from_bytes(block[34:36], "big")),
        )
    if family in ("UNIX", "UNIX_DGRAM"):
        # Paths are NUL-padded; an abstract socket's name starts with NUL.
        return (
            (block[0:108].rstrip(b"\0").decode("utf-8", "backslashreplace"), 0),
            (block[108:216].rstrip(b"\0").decode("utf-8", "backslashreplace"), 0),
        )
    return None, None


def _v2_tlvs(block: bytes, start: int, buf: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs: list[tuple[int, bytes]] = []
    position = start
    while position < len(block):
        offset = 16 + position
        if len(block) - position < 3:
            raise _bad(
                2, f"{len(block) - position} stray bytes at offset {offset}, too few for a TLV", buf
            )
        type_ = block[position]
        size = int.from_bytes(block[position + 1 : position + 3], "big")
        value_start = position + 3
        if value_start + size > len(block):
            raise _bad(
                2,
                f"TLV type 0x{type_:02x} at offset {offset} says {size} bytes, "
                f"but the header has {len(block) - value_start} left",
                buf,
            )
        tlvs.append((type_, block[value_start : value_start + size]))
        position = value_start + size
    return tuple(tlvs)


def _address(text: str, which: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{which} address {text!r} is not an IP address") from None


def _port(port: int, which: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{which} port {port!r} is not a number from 0 to 65535")
    return port


def _endpoints(
    source: tuple[str, int], destination: tuple[str, int]
) -> tuple[
    ipaddress.IPv4Address | ipaddress.IPv6Address,
    ipaddress.IPv4Address | ipaddress.IPv6Address,
    int,
    int,
]:
    src = _address(source[0], "source")
    dst = _address(destination[0], "destination")
    if src.version != dst.version:
        raise ValueError(f"source {src} and destination {dst} are not both IPv4 or both IPv6")
    return src, dst, _port(source[1], "source"), _port(destination[1], "destination")


def build_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 1 header for a TCP connection from ``source`` to
    ``destination`` (``(address, port)`` pairs, both IPv4 or both IPv6)."""
    src, dst, source_port, destination_port = _endpoints(source, destination)
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source_port} {destination_port}\r\n".encode()


def build_v2(
    source: tuple[str, int] | None = None,
    destination: tuple[str, int] | None = None,
    *,
    command: str | None = None,
    tlvs: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """A version 2 header.

    With ``source`` and ``destination`` (both IPv4 or both IPv6) it is a
    TCP4 or TCP6 header, command PROXY; without them family UNSPEC, command
    LOCAL.  ``command`` overrides the command.  ``tlvs`` are ``(type,
    value)`` pairs, appended in order.
    """
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination, or neither")
    if source is not None and destination is not None:
        src, dst, source_port, destination_port = _endpoints(source, destination)
        family = 0x11 if src.version == 4 else 0x21
        block = (
            src.packed
            + dst.packed
            + source_port.to_bytes(2, "big")
            + destination_port.to_bytes(2, "big")
        )
        default_command = "PROXY"
    else:
        family, block, default_command = 0x00, b"", "LOCAL"
    command = default_command if command is None else command
    codes = {name: code for code, name in _V2_COMMANDS.items()}
    if command not in codes:
        raise ValueError(f"command {command!r} is not 'PROXY' or 'LOCAL'")
    for type_, value in tlvs:
        if not 0 <= type_ <= 255:
            raise ValueError(f"TLV type {type_} is not a byte")
        if len(value) > 0xFFFF:
            raise ValueError(f"TLV type 0x{type_:02x}: {len(value)} bytes is over 65535")
        block += bytes([type_]) + len(value).to_bytes(2, "big") + bytes(value)
    if len(block) > 0xFFFF:
        raise ValueError(f"{len(block)} bytes of addresses and TLVs is over 65535")
    return (
        V2_SIGNATURE
        + bytes([0x20 | codes[command], family])
        + len(block).to_bytes(2, "big")
        + block
    )
