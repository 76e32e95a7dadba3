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

The shared negotiator logic lives here too: :class:`_LineServer` runs the
plaintext phase of the line-based servers (SMTP, LMTP, POP3, NNTP, FTP; IMAP
and ManageSieve read their commands themselves and reuse the rest), with
each protocol's replies as class attributes and hooks where it differs;
:class:`_LineClient` and :class:`_CommandFollowup` serve the clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from ._base import (
    DEFAULT_MAX_BUFFER_SIZE,
    ClientNegotiator,
    Followup,
    ServerNegotiator,
    State,
    _Conversation,
)
from .errors import StartTLSUsageError
from .events import CommandReceived

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


class _LineClient(ClientNegotiator):
    """A client whose plaintext phase steps from the greeting on."""

    #: Where the plaintext phase is (the instance's own once it moves on).
    _step: str = "greeting"


class _CommandFollowup(Followup):
    """A followup that sends one command inside TLS (CAPA, FEAT...)."""

    #: The command line, CRLF included.
    COMMAND: ClassVar[bytes] = b""

    def __init__(
        self,
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._send(self.COMMAND)


class _LineServer(ServerNegotiator):
    """The server side of a line-based protocol: one command a CRLF line,
    ``VERB [argument]``.  The protocol's differences are data (the class
    attributes below) and a few hooks."""

    #: The verb that starts TLS.
    STARTTLS_VERB: ClassVar[str] = "STARTTLS"
    #: Commands allowed before TLS when it is required.
    ALLOWED_BEFORE_TLS: ClassVar[frozenset[str]] = frozenset()
    #: The go-ahead.
    GO_AHEAD: ClassVar[bytes] = b""
    #: The reply to a line that does not start with a verb.
    UNKNOWN_REPLY: ClassVar[bytes] = b""
    #: The reply to STARTTLS with an argument.
    ARGUMENT_REPLY: ClassVar[bytes] = b""
    #: The reply to a command that needs TLS first.
    TLS_REQUIRED_REPLY: ClassVar[bytes] = b""
    #: The reply queued before a framing error, ``{}`` the reason.
    FRAMING_REPLY: ClassVar[str] = ""
    #: How a reply is named in the CRLF error ("an SMTP reply").
    REPLY_NAME: ClassVar[str] = ""
    #: The capability command (answered inside TLS too).
    CAPABILITY_VERB: ClassVar[str] = ""
    #: The reply to STARTTLS inside TLS.
    ALREADY_ACTIVE_REPLY: ClassVar[bytes] = b""

    @contextmanager
    def _usage_errors(self) -> Iterator[None]:
        """Turn a ValueError (bad text) into a StartTLSUsageError."""
        try:
            yield
        except ValueError as exc:
            raise StartTLSUsageError(str(exc), protocol=self.protocol) from None

    def _check_greeting(self, greeting: str) -> None:
        with self._usage_errors():
            check_text(greeting, "greeting")

    def _check_raw(self, data: bytes) -> None:
        super()._check_raw(data)
        if not data.endswith(b"\r\n"):
            raise StartTLSUsageError(f"{self.REPLY_NAME} ends with CRLF", protocol=self.protocol)

    def _framing_reply(self, what: str) -> None:
        self._send(self.FRAMING_REPLY.format(what).encode())

    def _process(self) -> None:
        while self._state is State.NEGOTIATING and self._waiting is None:
            start = self._consumed
            line = self._read_line()
            if line is None:
                return
            parsed = parse_verb(line)
            if parsed is None:
                self._send(self.UNKNOWN_REPLY)
                continue
            verb, argument = parsed
            self._on_verb(verb, argument, line + b"\r\n", start)

    def _on_verb(self, verb: str, argument: str, raw: bytes, start: int) -> None:
        """STARTTLS, a refusal, or the command (answered or shown)."""
        if verb == self.STARTTLS_VERB:
            self._on_starttls(argument)
            return
        refusal = self._refusal(verb)
        if refusal is not None:
            self._send(self._answer_line(refusal))
            return
        self._dispatch(self._command(verb, argument, raw), start)

    def _answer_line(self, data: bytes) -> bytes:
        """The reply ``data`` as sent to the current command (IMAP tags it)."""
        return data

    def _on_starttls(self, argument: str) -> None:
        if argument:
            self._send(self._answer_line(self.ARGUMENT_REPLY))
        else:
            self._switch(self._answer_line(self.GO_AHEAD))

    def _refusal(self, verb: str) -> bytes | None:
        """The reply that refuses ``verb`` now, or ``None``."""
        if self.require_tls and verb not in self.ALLOWED_BEFORE_TLS:
            return self.TLS_REQUIRED_REPLY
        return None

    def _command(self, verb: str, argument: str, raw: bytes) -> CommandReceived:
        return CommandReceived(command=verb, argument=argument, raw=raw)

    def _dispatch(self, event: CommandReceived, start: int) -> None:
        if event.command in self.OWN_COMMANDS:
            self._handle_command(event, start)
        else:
            self._emit_command(event, start)

    def _capability_verb(self) -> str:
        return self.CAPABILITY_VERB

    def _capability_reply(self, argument: str, capabilities: Iterable[str], *, tls: bool) -> bytes:
        """The answer to the capability command; STARTTLS is offered unless
        ``tls``."""
        raise TypeError(f"{type(self).__name__} does not define _capability_reply()")

    def answer_in_tls(self, line: bytes) -> bytes | None:
        """Inside TLS: the refusal of a second STARTTLS, the capability
        command with :attr:`tls_capabilities` (no STARTTLS); ``None`` for
        everything else."""
        parsed = parse_verb(line.removesuffix(b"\r\n"))
        if parsed is None:
            return None
        verb, argument = parsed
        if verb == self.STARTTLS_VERB:
            return self.ALREADY_ACTIVE_REPLY
        if verb == self._capability_verb():
            return self._capability_reply(argument, self.tls_capabilities, tls=True)
        return None
