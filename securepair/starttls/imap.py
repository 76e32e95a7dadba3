"""IMAP STARTTLS (RFC 2595 3.1, RFC 9051 6.2.1; RFC 3501 for IMAP4rev1).

The plaintext phase
===================
::

    S: * OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready
    C: a1 STARTTLS
    S: a1 OK Begin TLS negotiation now                the go-ahead
    C: <ClientHello> ...
    C: a2 CAPABILITY                                  inside TLS, again
    S: * CAPABILITY IMAP4rev1 AUTH=PLAIN
    S: a2 OK CAPABILITY completed

The server may send untagged responses (``* ...``) at any time, before the
tagged reply too; ``a1 NO`` or ``a1 BAD`` refuse.  A server that requires
TLS advertises ``LOGINDISABLED`` and refuses LOGIN/AUTHENTICATE with ``NO
[PRIVACYREQUIRED]`` (RFC 5530) until STARTTLS.

Traps
=====
* **Untagged responses carry nothing over.**  ``* OK [ALERT] ...``,
  ``* CAPABILITY ...``, ``* 3 EXISTS`` received before the tagged OK are
  read and discarded by the client: a man in the middle can send them, so
  nothing in them outlives the plaintext phase.  Bytes after the tagged OK
  are an :class:`~securepair.starttls.errors.InjectionError` (a server
  waits for our ClientHello); a tagged reply that arrives before the
  command was sent is one too.
* **PREAUTH.**  A ``* PREAUTH`` greeting puts the session in the
  authenticated state, where STARTTLS is not allowed: a man in the middle
  who sends PREAUTH silently disables TLS in clients that only try
  STARTTLS "when possible" (the 2021 "Why TLS is better without STARTTLS"
  study, and CVE-2020-12398 in Thunderbird).  Here it is a refusal: an
  error unless plaintext was explicitly allowed.
* **Command injection (server).**  Commands pipelined after ``STARTTLS``
  are never executed (see :class:`~securepair.starttls.PipelinePolicy`);
  RFC 9051 lets a client pipeline its ClientHello, which the default
  policy hands to TLS.
* **Literals.**  ``{5}`` / ``{5+}`` literals can carry CRLFs; the client
  skips the literals of untagged responses so that their content is never
  read as a tagged reply.  The server accepts no literal before TLS: a
  synchronising literal gets ``BAD`` at once (the client never sends its
  data), a non-synchronising one is read and skipped, then refused.

Line limit: RFC 9051 4 recommends that servers accept lines of at least
8192 octets; the default is 8192.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from ._base import DEFAULT_MAX_BUFFER_SIZE, Followup, PipelinePolicy, State, _Conversation
from ._text import _LineClient, _LineServer, check_text
from .errors import LimitExceededError, StartTLSUsageError
from .events import CommandReceived

__all__ = ["IMAPClient", "IMAPServer", "IMAPFollowup"]

_LITERAL_S2C = re.compile(rb"~?\{([0-9]{1,10})\}$")
_LITERAL_C2S = re.compile(rb"~?\{([0-9]{1,10})(\+?)\}$")
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
# A tag is astring characters except "+" (RFC 9051 9: tag).
_TAG = re.compile(rb"[!#$&'\x2c-\x5b\x5e-\x7a|~]+")
_ATOM = re.compile(r"[!#$&'+\x2c-\x5a\x5e-\x7a|~^=]+")


class _Responses(_Conversation):
    """Reads whole IMAP responses, skipping the literals they contain."""

    def _init_responses(self) -> None:
        self._literal_wait = -1

    def _read_response(
        self, *, client_literals: bool = False
    ) -> tuple[bytes, bytes, int, bool] | None:
        """``(first line, raw, start offset, had literals)`` of the next
        complete response (or command, with ``client_literals``), consumed,
        or ``None``.  A client's synchronising literal ``{n}`` ends the
        command at its line: the client waits for a continuation before it
        sends the data."""
        pattern = _LITERAL_C2S if client_literals else _LITERAL_S2C
        while True:
            if self._literal_wait >= 0:
                if self._peek_bytes(self._literal_wait) is None:
                    return None
                self._literal_wait = -1
            line = self._peek_line()
            if line is None:
                return None
            self._acc.append(line)
            match = pattern.search(line)
            if match is None:
                break
            if client_literals and not match.group(2):
                break
            size = int(match.group(1))
            if size > self.max_buffer_size:
                raise self._fail(
                    LimitExceededError(
                        f"a literal of {size} bytes is over max_buffer_size",
                        protocol=self.protocol,
                        limit=self.max_buffer_size,
                        data=line,
                    )
                )
            self._literal_wait = size
        first = self._acc[0]
        literals = len(self._acc) > 1 or match is not None
        start = self._consumed
        raw = self._consume_looked()
        return first, raw, start, literals


def _status(line: bytes) -> tuple[bytes, bytes, bytes]:
    """``(tag, STATUS, text)`` of a response line."""
    tag, _, rest = line.partition(b" ")
    status, _, text = rest.partition(b" ")
    return tag, status.upper(), text


def _capabilities(text: bytes) -> tuple[str, ...]:
    return tuple(text.decode("ascii", "replace").split())


class IMAPClient(_Responses, _LineClient):
    """The client side of IMAP STARTTLS.

    Reads the greeting (refusing PREAUTH), sends ``<tag> STARTTLS`` right
    away (checking the greeting's ``[CAPABILITY ...]`` when there is one) and
    reports :class:`~securepair.starttls.events.ReadyToUpgrade` on the
    tagged OK.  Tags are ``tag_prefix`` + a counter: ``a1`` for STARTTLS,
    ``a2`` for the CAPABILITY of :meth:`followup`.
    """

    protocol = "imap"

    def __init__(
        self,
        *,
        tag_prefix: str = "a",
        allow_plaintext: bool = False,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            allow_plaintext=allow_plaintext,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        if not isinstance(tag_prefix, str) or not _TAG.fullmatch(tag_prefix.encode()):
            raise StartTLSUsageError(f"{tag_prefix!r} is not an IMAP tag", protocol="imap")
        self.tag_prefix = tag_prefix
        self._tag = f"{tag_prefix}1".encode()
        self._init_responses()

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            response = self._read_response()
            if response is None:
                return
            line, raw, start, _ = response
            if self._step == "greeting":
                self._on_greeting(line, raw)
            else:
                self._on_response(line, raw, start)

    def _on_greeting(self, line: bytes, raw: bytes) -> None:
        tag, status, text = _status(line)
        if tag != b"*":
            self._malformed("the greeting is not an untagged response", raw)
        if status == b"OK":
            match = _CAPABILITY_CODE.match(text)
            if match is not None and "STARTTLS" not in (
                c.upper() for c in _capabilities(match.group(1))
            ):
                self._refuse(
                    "the server does not list STARTTLS in its greeting's capabilities",
                    b"",
                    not_offered=True,
                )
                return
            self._send_command(self._tag + b" STARTTLS\r\n")
            self._step = "starttls"
        elif status == b"PREAUTH":
            self._refuse(
                "the server greeted with PREAUTH: the session is already authenticated "
                "and STARTTLS is impossible (a man in the middle can send this to "
                "disable TLS)",
                raw,
            )
        elif status == b"BYE":
            self._closed_by_peer("the server greeted with BYE", raw)
        else:
            self._malformed(f"unexpected greeting status {status!r}", raw)

    def _on_response(self, line: bytes, raw: bytes, start: int) -> None:
        tag, status, _ = _status(line)
        if tag == b"*":
            if status == b"BYE":
                self._closed_by_peer("the server said BYE", raw)
            return  # untagged data: read, and forgotten
        if tag == b"+":
            self._malformed("unexpected continuation request", raw)
        if tag != self._tag:
            self._malformed(f"reply with unknown tag {tag[:32]!r}", raw)
        self._check_reply_start(start, "tagged reply")
        if status == b"OK":
            self._upgrade()
        elif status in (b"NO", b"BAD"):
            self._refuse(f"the server refused STARTTLS: {line.decode('utf-8', 'replace')}", raw)
        else:
            self._malformed(f"unexpected tagged status {status!r}", raw)

    def _make_followup(self) -> IMAPFollowup:
        return IMAPFollowup(
            f"{self.tag_prefix}2",
            max_line_length=self.max_line_length,
            max_buffer_size=self.max_buffer_size,
        )


class IMAPFollowup(_Responses, Followup):
    """``CAPABILITY`` again inside TLS; reports the fresh capabilities (from
    the untagged CAPABILITY response or the tagged OK's response code)."""

    protocol = "imap"

    def __init__(
        self,
        tag: str = "a2",
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._init_responses()
        self._tag = tag.encode()
        self._found: tuple[str, ...] | None = None
        self._send(self._tag + b" CAPABILITY\r\n")

    def _process(self) -> None:
        while not self.done:
            response = self._read_response()
            if response is None:
                return
            line, raw, _, _ = response
            tag, status, text = _status(line)
            if tag == b"*":
                if status == b"CAPABILITY":
                    self._found = _capabilities(text)
                elif status == b"BYE":
                    self._closed_by_peer("the server said BYE", raw)
                continue
            if tag != self._tag or status != b"OK":
                self._malformed("CAPABILITY failed inside TLS", raw)
            match = _CAPABILITY_CODE.match(text)
            if match is not None:
                self._found = _capabilities(match.group(1))
            self._finish(self._found or ())


class IMAPServer(_Responses, _LineServer):
    """The server side of IMAP STARTTLS.

    Sends ``* OK [CAPABILITY ...] greeting`` at once.  The capabilities
    default to ``IMAP4rev1``; STARTTLS is added, and LOGINDISABLED too when
    ``require_tls`` (RFC 9051 6.2.3).  With ``require_tls``, LOGIN and
    AUTHENTICATE get ``NO [PRIVACYREQUIRED]`` and every other command but
    CAPABILITY, NOOP, LOGOUT, ID and STARTTLS gets ``BAD``.  Answered by
    default: CAPABILITY, NOOP, LOGOUT, ID.  Others are
    :class:`~securepair.starttls.events.CommandReceived` (with ``tag``);
    answer with :meth:`reply`.
    """

    protocol = "imap"
    OWN_COMMANDS = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    ALLOWED_BEFORE_TLS: ClassVar[frozenset[str]] = frozenset(
        {"CAPABILITY", "NOOP", "LOGOUT", "ID", "STARTTLS"}
    )
    # Sent after the command's tag and a space.
    GO_AHEAD = b"OK Begin TLS negotiation now\r\n"
    ARGUMENT_REPLY = b"BAD STARTTLS takes no arguments\r\n"
    TLS_REQUIRED_REPLY = b"BAD Must issue a STARTTLS command first\r\n"
    FRAMING_REPLY = "* BYE Syntax error: {}\r\n"
    REPLY_NAME = "an IMAP response"

    def __init__(
        self,
        *,
        greeting: str = "IMAP server ready",
        capabilities: Iterable[str] = ("IMAP4rev1",),
        tls_capabilities: Iterable[str] | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        auto_answer: Iterable[str] | None = None,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            capabilities=capabilities,
            tls_capabilities=tls_capabilities,
            require_tls=require_tls,
            policy=policy,
            auto_answer=auto_answer,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        self._init_responses()
        self._command_tag = "*"
        self.tls_capabilities = [c for c in self.tls_capabilities if c.upper() != "LOGINDISABLED"]
        self._check_greeting(greeting)
        self._send(f"* OK [CAPABILITY {self._cap_list(tls=False)}] {greeting}\r\n".encode())

    def _check_capability(self, capability: str) -> None:
        if not isinstance(capability, str) or not _ATOM.fullmatch(capability):
            raise StartTLSUsageError(
                f"capability {capability!r} is not an IMAP atom", protocol=self.protocol
            )

    def _cap_list(self, *, tls: bool) -> str:
        if tls:
            return " ".join(self.tls_capabilities)
        caps = list(self.capabilities)
        caps.append("STARTTLS")
        if self.require_tls and "LOGINDISABLED" not in (c.upper() for c in caps):
            caps.append("LOGINDISABLED")
        return " ".join(caps)

    # -- the application's replies

    def reply(self, status: str, text: str = "", untagged: Iterable[str] = ()) -> None:
        """Answer the waiting command: each ``untagged`` line as ``* line``,
        then ``<tag> <status> <text>`` (status ``OK``, ``NO`` or ``BAD``)."""
        waiting = self.waiting
        if waiting is None:
            raise StartTLSUsageError("no command is waiting for a reply", protocol=self.protocol)
        if status.upper() not in ("OK", "NO", "BAD"):
            raise StartTLSUsageError(
                f"status {status!r} is not OK, NO or BAD", protocol=self.protocol
            )
        with self._usage_errors():
            lines = [f"* {check_text(u, 'untagged response')}\r\n" for u in untagged]
            lines.append(f"{waiting.tag} {status.upper()} {check_text(text)}".rstrip() + "\r\n")
        self.reply_raw("".join(lines).encode("utf-8"))

    # -- commands

    def _process(self) -> None:
        while self._state is State.NEGOTIATING and self._waiting is None:
            command = self._read_response(client_literals=True)
            if command is None:
                return
            line, raw, start, literals = command
            if literals:
                self._refuse_literal(line)
            else:
                self._on_command(line, raw, start)

    def _refuse_literal(self, line: bytes) -> None:
        tag = line.partition(b" ")[0]
        if not _TAG.fullmatch(tag):
            tag = b"*"
        self._send(tag + b" BAD Literals are not accepted before TLS\r\n")

    def _on_command(self, line: bytes, raw: bytes, start: int) -> None:
        tag_b, _, rest = line.partition(b" ")
        if not _TAG.fullmatch(tag_b):
            self._send(b"* BAD Invalid tag\r\n")
            return
        tag = tag_b.decode("ascii")
        verb_b, _, argument_b = rest.partition(b" ")
        if not verb_b.isalpha() or not verb_b.isascii():
            self._send(f"{tag} BAD Invalid command\r\n".encode())
            return
        self._command_tag = tag
        self._on_verb(
            verb_b.decode("ascii").upper(), argument_b.decode("utf-8", "replace"), raw, start
        )

    def _answer_line(self, data: bytes) -> bytes:
        return f"{self._command_tag} ".encode() + data

    def _refusal(self, verb: str) -> bytes | None:
        if (
            self.require_tls
            and verb not in self.ALLOWED_BEFORE_TLS
            and verb in ("LOGIN", "AUTHENTICATE")
        ):
            return b"NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n"
        return super()._refusal(verb)

    def _command(self, verb: str, argument: str, raw: bytes) -> CommandReceived:
        return CommandReceived(command=verb, argument=argument, raw=raw, tag=self._command_tag)

    def _answer(self, command: CommandReceived) -> None:
        tag = command.tag
        verb = command.command
        if verb == "CAPABILITY":
            self._send(
                f"* CAPABILITY {self._cap_list(tls=False)}\r\n"
                f"{tag} OK CAPABILITY completed\r\n".encode()
            )
        elif verb == "NOOP":
            self._send(f"{tag} OK NOOP completed\r\n".encode())
        elif verb == "ID":
            self._send(f"* ID NIL\r\n{tag} OK ID completed\r\n".encode())
        elif verb == "LOGOUT":
            self._close(f"* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n".encode())
        else:
            self._send(f"{tag} BAD Command unknown or not allowed now\r\n".encode())

    def answer_in_tls(self, line: bytes) -> bytes | None:
        """Inside TLS: ``<tag> BAD`` to STARTTLS, the TLS capabilities (no
        STARTTLS, no LOGINDISABLED) to CAPABILITY; ``None`` otherwise."""
        tag, _, rest = line.removesuffix(b"\r\n").partition(b" ")
        if not _TAG.fullmatch(tag):
            return None
        verb = rest.partition(b" ")[0].upper()
        if verb == b"STARTTLS":
            return tag + b" BAD TLS is already active\r\n"
        if verb == b"CAPABILITY":
            return (
                f"* CAPABILITY {self._cap_list(tls=True)}\r\n".encode()
                + tag
                + b" OK CAPABILITY completed\r\n"
            )
        return None
