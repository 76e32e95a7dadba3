"""Say what a peer is speaking when it is not TLS.

OpenSSL answers a plaintext peer with ``wrong version number``, which tells a
user nothing.  The first bytes nearly always say what happened: an HTTP client
on an HTTPS port, a mail client that skipped STARTTLS, a load balancer sending
a PROXY header to a port not set up for it.  This runs once per connection on
at most a few dozen bytes, so there is one implementation, shared by the C and
the Python framer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NotTLSError

#: How many leading bytes a :class:`~securepair.errors.NotTLSError` shows.
SHOWN_BYTES = 32

_PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_PG_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"

# (kind, label, pattern): first match wins.  Patterns are matched against the
# start of the data, case-insensitively where protocols are.
_TEXT_RULES: tuple[tuple[str, str, re.Pattern[bytes]], ...] = tuple(
    (kind, label, re.compile(pattern, re.IGNORECASE))
    for kind, label, pattern in (
        ("proxy-v1", "a PROXY protocol v1 header", rb"PROXY (TCP4|TCP6|UNKNOWN)"),
        (
            "http-request",
            "HTTP",
            rb"(GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|PATCH|TRACE) \S|PRI \* HTTP/2",
        ),
        ("http-response", "an HTTP response", rb"HTTP/\d"),
        ("ssh", "SSH", rb"SSH-\d"),
        ("ftp", "FTP", rb"220[ -][^\r\n]*FTP|(AUTH (TLS|SSL)|FEAT|PASV|SYST)\b"),
        ("smtp", "SMTP", rb"220[ -]|(EHLO|HELO|LHLO|MAIL FROM:|RCPT TO:)"),
        (
            "imap",
            "IMAP",
            rb"\* (OK|PREAUTH|BYE)\b"
            rb"|[A-Z0-9.]{1,16} (CAPABILITY|LOGIN|STARTTLS|AUTHENTICATE|SELECT|LOGOUT|ID|NOOP)\b",
        ),
        ("pop3", "POP3", rb"\+OK\b|-ERR\b|(CAPA|STLS|APOP)\b"),
        ("pop3-or-ftp", "POP3 or FTP", rb"(USER|PASS) "),
        ("nntp", "NNTP", rb"20[01] "),
        ("xmpp", "XMPP", rb"<\?xml|<stream:stream"),
    )
)

_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


@dataclass(frozen=True, slots=True)
class Sniff:
    """What the first bytes of a stream look like."""

    #: ``"tls"`` or one of the non-TLS kinds: ``"sslv2"``, ``"proxy-v1"``,
    #: ``"proxy-v2"``, ``"http-request"``, ``"http-response"``, ``"ssh"``,
    #: ``"smtp"``, ``"imap"``, ``"pop3"``, ``"ftp"``, ``"pop3-or-ftp"``,
    #: ``"nntp"``, ``"xmpp"``, ``"postgres"``, ``"text"``, ``"unknown"``;
    #: ``"empty"`` for no bytes.
    kind: str
    #: A short human name for the message (``"HTTP"``, ``"SMTP"``...).
    label: str


def _head(data: bytes | bytearray | memoryview, count: int) -> bytes:
    # Bytes, not items: a memoryview of another format or shape is read as
    # the bytes under it, as the framers read it.
    if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
        data = data.cast("B") if data.c_contiguous else data.tobytes()
    return bytes(data[:count])


def is_tls_start(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` could begin a TLS record stream (checks two bytes)."""
    head = _head(data, 2)
    if not head:
        return True
    if not 20 <= head[0] <= 24:
        return False
    return len(head) < 2 or head[1] == 3


def sniff(data: bytes | bytearray | memoryview) -> Sniff:
    """Classify the first bytes of a stream."""
    head = _head(data, 64)
    if not head:
        return Sniff("empty", "nothing")
    if is_tls_start(head):
        return Sniff("tls", "TLS")
    # Up to the NUL at least: a text peer may well start with blank lines.
    if head.startswith(_PROXY_V2_SIGNATURE[: len(head)]) and len(head) >= 5:
        return Sniff("proxy-v2", "a PROXY protocol v2 header")
    if head.startswith(_PG_SSL_REQUEST[: len(head)]) and len(head) >= 4:
        return Sniff("postgres", "a PostgreSQL SSLRequest")
    # SSLv2-compatible ClientHello (RFC 6101 E.2): a two-byte length with the
    # top bit set, message type 1, then version major 0 (SSL 2) or 3.
    if len(head) >= 4 and head[0] & 0x80 and head[2] == 1 and head[3] in (0, 3):
        return Sniff("sslv2", "an SSL 2.0 ClientHello")
    for kind, label, pattern in _TEXT_RULES:
        if pattern.match(head):
            return Sniff(kind, label)
    if all(b in _PRINTABLE for b in head):
        return Sniff("text", "text")
    return Sniff("unknown", "unknown")


#: Kinds whose bytes are binary: a 0x0a in them is not the end of a line.
_BINARY_KINDS = frozenset({"sslv2", "proxy-v2", "postgres", "unknown"})


def shown_bytes(data: bytes | bytearray | memoryview, *, lines: bool = True) -> bytes:
    """The first bytes to show a user: at most 32, and with ``lines`` (for
    text protocols) only up to the first newline."""
    head = _head(data, SHOWN_BYTES)
    nl = head.find(b"\n") if lines else -1
    return head[: nl + 1] if nl >= 0 else head


def not_tls_error(data: bytes | bytearray | memoryview) -> NotTLSError | None:
    """The error to raise if ``data`` cannot be the start of TLS, else None.

    The message names what the bytes look like and shows them escaped::

        peer sent plaintext, looks like HTTP: b'GET / HTTP/1.1\\r\\n'
    """
    found = sniff(data)
    if found.kind in ("tls", "empty"):
        return None
    first = shown_bytes(data, lines=found.kind not in _BINARY_KINDS)
    if found.kind == "sslv2":
        message = (
            "peer sent an SSL 2.0 ClientHello; SSL 2.0 and 3.0 are obsolete and "
            f"not accepted: {first!r}"
        )
    elif found.kind in ("proxy-v1", "proxy-v2"):
        message = (
            f"peer sent {found.label} before TLS (a load balancer configured to "
            f"send PROXY headers to a port that does not expect them?): {first!r}"
        )
    elif found.kind == "postgres":
        message = f"peer sent {found.label}, not TLS: {first!r}"
    elif found.kind == "text":
        message = f"peer sent plaintext, not TLS: {first!r}"
    elif found.kind == "unknown":
        if 20 <= first[0] <= 24:
            # A record type byte, so it is the version that gave it away.
            reason = (
                f"record type 0x{first[0]:02x} is followed by version major "
                f"0x{first[1]:02x}, not 0x03"
            )
        else:
            reason = f"first byte 0x{first[0]:02x} is not a TLS record type"
        message = f"peer did not send TLS ({reason}): {first!r}"
    else:
        message = f"peer sent plaintext, looks like {found.label}: {first!r}"
    return NotTLSError(message, kind=found.kind, first_bytes=_head(data, SHOWN_BYTES))
