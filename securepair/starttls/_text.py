"""Reading and writing the line-based protocols' messages.

Three reply shapes cover SMTP, LMTP, FTP, NNTP and POP3:

* numeric replies, every line ``ddd-text`` except the last ``ddd text``
  (SMTP, LMTP; RFC 5321 4.2), every line carrying the same code;
* FTP's numeric replies, where only the first and the last line carry the
  code and the lines between are free text (RFC 959 4.2);
* dot-terminated bodies (POP3 ``CAPA``, NNTP ``CAPABILITIES``): lines up to
  a line holding a single ``.``, with a leading dot doubled (RFC 1939 3).

Readers look ahead without consuming (see ``_Conversation._peek_line``), so
an incomplete reply stays in the bounded buffer and a complete one is
consumed at once, in linear time whatever the chunking.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._base import _Conversation

__all__ = [
    "Reply",
    "read_numeric_reply",
    "read_ftp_reply",
    "read_dot_body",
    "parse_verb",
    "format_numeric_reply",
    "dot_body",
    "check_text",
]

_NUMERIC = re.compile(rb"([1-5][0-9][0-9])([ -]|$)")
_VERB = re.compile(rb"([A-Za-z][A-Za-z0-9-]{0,31})(?: (.*))?$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete numeric reply."""

    #: The three-digit code.
    code: int
    #: The text of each line, after the code and its separator.
    lines: tuple[bytes, ...]
    #: The reply as it came on the wire, CRLFs included.
    raw: bytes
    #: Stream offset of its first byte (for the reply fence).
    start: int

    def text(self) -> str:
        """The lines joined by spaces, for messages."""
        return " ".join(line.decode("utf-8", "replace") for line in self.lines)


def read_numeric_reply(conv: _Conversation) -> Reply | None:
    """The next SMTP-style reply, consumed, or ``None`` if incomplete."""
    while True:
        line = conv._peek_line()
        if line is None:
            return None
        match = _NUMERIC.match(line)
        if match is None:
            conv._malformed(f"not a reply line: {line[:64]!r}", line)
        code = int(match.group(1))
        if conv._acc and code != conv._acc_code:
            conv._malformed(
                f"a multi-line reply changed its code from {conv._acc_code} to {code}", line
            )
        conv._acc_code = code
        conv._acc.append(line[4:])
        if match.group(2) != b"-":
            break
    lines = tuple(conv._acc)
    start = conv._consumed
    raw = conv._consume_looked()
    return Reply(code=code, lines=lines, raw=raw, start=start)


def read_ftp_reply(conv: _Conversation) -> Reply | None:
    """The next FTP reply (RFC 959 4.2), consumed, or ``None``."""
    while True:
        line = conv._peek_line()
        if line is None:
            return None
        if not conv._acc:
            match = _NUMERIC.match(line)
            if match is None:
                conv._malformed(f"not an FTP reply line: {line[:64]!r}", line)
            conv._acc_code = int(match.group(1))
            conv._acc.append(line[4:])
            if match.group(2) != b"-":
                break
            continue
        conv._acc.append(line)
        code = b"%d" % conv._acc_code
        if line == code or line.startswith(code + b" "):
            conv._acc[-1] = line[4:]
            break
    lines = tuple(conv._acc)
    start = conv._consumed
    code_ = conv._acc_code
    raw = conv._consume_looked()
    return Reply(code=code_, lines=lines, raw=raw, start=start)


def read_dot_body(
    conv: _Conversation, has_body: Callable[[bytes], bool]
) -> tuple[bytes, tuple[bytes, ...], bytes] | None:
    """A status line and, if ``has_body(status_line)``, its dot-terminated
    body, consumed: ``(status_line, body_lines, raw)`` with the dots undone,
    or ``None`` if incomplete."""
    while True:
        line = conv._peek_line()
        if line is None:
            return None
        if not conv._acc:
            conv._acc.append(line)
            if not has_body(line):
                break
            continue
        if line == b".":
            break
        conv._acc.append(line[1:] if line.startswith(b".") else line)
    status = conv._acc[0]
    lines = tuple(conv._acc[1:])
    raw = conv._consume_looked()
    return status, lines, raw


def parse_verb(line: bytes) -> tuple[str, str] | None:
    """``(VERB, argument)`` of a command line (no CRLF), or ``None`` if the
    line does not start with a verb.  The verb is upper-cased; the argument
    is everything after the first space, decoded as UTF-8 (lossy)."""
    match = _VERB.match(line)
    if match is None:
        return None
    argument = match.group(2) or b""
    return match.group(1).decode("ascii").upper(), argument.decode("utf-8", "replace")


def check_text(text: str, what: str = "text") -> str:
    """Refuse text that could break a line-based framing (CR, LF, NUL or
    other control characters)."""
    if not isinstance(text, str) or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{what} {text!r} holds a control character (CR, LF...)")
    return text


def format_numeric_reply(code: int, lines: Iterable[str]) -> bytes:
    """``ddd-line`` ... ``ddd line`` with CRLFs (SMTP, LMTP, NNTP single
    lines).  An empty ``lines`` gives the bare code."""
    if not isinstance(code, int) or not 100 <= code <= 599:
        raise ValueError(f"reply code {code!r} is not a three-digit number")
    texts = [check_text(line, "reply text") for line in lines] or [""]
    out = []
    for index, text in enumerate(texts):
        sep = " " if index == len(texts) - 1 else "-"
        out.append(f"{code}{sep}{text}".rstrip(" ") + "\r\n")
    return "".join(out).encode("utf-8")


def dot_body(lines: Iterable[str]) -> bytes:
    """Lines of a dot-terminated body, dots doubled, the final ``.`` line
    included."""
    out = []
    for line in lines:
        check_text(line, "body line")
        out.append(("." + line if line.startswith(".") else line) + "\r\n")
    out.append(".\r\n")
    return "".join(out).encode("utf-8")
