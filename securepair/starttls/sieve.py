"""ManageSieve STARTTLS (RFC 5804 2.2).

The plaintext phase
===================
::

    S: "IMPLEMENTATION" "Example ManageSieve"         the greeting is the
    S: "SASL" ""                                      capability list
    S: "SIEVE" "fileinto vacation"
    S: "STARTTLS"
    S: "VERSION" "1.0"
    S: OK
    C: STARTTLS
    S: OK "Begin TLS negotiation now."                the go-ahead
    C: <ClientHello> ...
    S: "IMPLEMENTATION" "Example ManageSieve"         inside TLS the server
    S: "SASL" "PLAIN"                                 sends its capabilities
    S: "SIEVE" "fileinto vacation"                    again, unasked
    S: "VERSION" "1.0"
    S: OK

``NO`` refuses, ``BYE`` closes.  A server that requires TLS answers the
other commands with ``NO (ENCRYPT-NEEDED)`` (RFC 5804 1.3).

Traps
=====
* **The first message inside TLS comes from the server**, unasked.  So a
  client must not read anything it received before its ClientHello as
  that message: any byte after the ``OK`` go-ahead is an
  :class:`~securepair.starttls.errors.InjectionError`, and the client's
  :meth:`ManageSieveClient.followup` reads the fresh capabilities from the
  TLS stream only.  The server's :meth:`ManageSieveServer.followup` sends
  them.
* **Command injection (server)**: see
  :class:`~securepair.starttls.PipelinePolicy`.
* **Literals**: ``{n}`` / ``{n+}`` strings may hold CRLFs; both sides skip
  them as part of the line that announced them, so their content is never
  read as a response or a command.

Line limit: RFC 5804 sets none; the default is 8192.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._base import DEFAULT_MAX_BUFFER_SIZE, Followup, PipelinePolicy, State, _Conversation
from ._text import _LineClient, _LineServer, check_text
from .errors import LimitExceededError, StartTLSUsageError
from .events import CommandReceived

__all__ = ["ManageSieveClient", "ManageSieveServer", "ManageSieveFollowup", "quote"]

_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}$")
_LITERAL_AT = re.compile(rb"\{([0-9]{1,10})\+?\}\r\n")
_ATOM = re.compile(rb"[A-Za-z][A-Za-z0-9-]*")


def quote(text: str) -> str:
    """``text`` as a ManageSieve quoted string."""
    check_text(text, "string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Token:
    """A token of a ManageSieve line: an atom, a string, or a response code."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: bytes) -> None:
        self.kind = kind  # "atom", "string" or "code"
        self.value = value


class _Lines(_Conversation):
    """Reads logical lines (a line and the literals it announces)."""

    def _init_lines(self) -> None:
        self._literal_wait = -1

    def _literal_too_large(self) -> None:
        """Called before failing on a literal over ``max_buffer_size``."""

    def _read_logical(self) -> tuple[bytes, bytes, int] | None:
        """``(first line, raw, start offset)`` of the next logical line,
        consumed; its literals (``{n+}``, and ``{n}`` from lenient peers)
        are included in ``raw``."""
        while True:
            if self._literal_wait >= 0:
                if self._peek_bytes(self._literal_wait) is None:
                    return None
                self._literal_wait = -1
            line = self._peek_line()
            if line is None:
                return None
            self._acc.append(line)
            match = _LITERAL.search(line)
            if match is None:
                break
            size = int(match.group(1))
            if size > self.max_buffer_size:
                self._literal_too_large()
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
        start = self._consumed
        return first, self._consume_looked(), start

    def _tokens(self, raw: bytes) -> list[_Token]:
        """Split a logical line (CRLF included) into tokens."""
        tokens: list[_Token] = []
        end = len(raw) - 2
        i = 0
        while i < end:
            c = raw[i]
            if c == 0x20:
                i += 1
            elif c == 0x22:  # quoted string
                out = bytearray()
                i += 1
                while True:
                    if i >= end:
                        self._malformed("unterminated quoted string", raw)
                    c = raw[i]
                    if c == 0x5C:
                        if i + 1 >= end or raw[i + 1] not in b'"\\':
                            self._malformed("bad escape in a quoted string", raw)
                        out.append(raw[i + 1])
                        i += 2
                    elif c == 0x22:
                        i += 1
                        break
                    else:
                        out.append(c)
                        i += 1
                tokens.append(_Token("string", bytes(out)))
            elif c == 0x7B:  # literal
                match = _LITERAL_AT.match(raw, i)
                if match is None:
                    self._malformed("bad literal", raw)
                size = int(match.group(1))
                tokens.append(_Token("string", raw[match.end() : match.end() + size]))
                i = match.end() + size
            elif c == 0x28:  # response code, up to the ")" outside quotes
                close = i + 1
                quoted = False
                while close < end and (quoted or raw[close] != 0x29):
                    if raw[close] == 0x5C and quoted:
                        close += 1
                    elif raw[close] == 0x22:
                        quoted = not quoted
                    close += 1
                if close >= end:
                    self._malformed("unterminated response code", raw)
                tokens.append(_Token("code", raw[i + 1 : close]))
                i = close + 1
            else:
                match = _ATOM.match(raw, i)
                if match is None:
                    self._malformed("unexpected character", raw)
                tokens.append(_Token("atom", match.group().upper()))
                i = match.end()
        return tokens


def _capability(tokens: list[_Token]) -> str:
    return " ".join(t.value.decode("utf-8", "replace") for t in tokens)


class _CapabilityReader(_Lines):
    """Collects capability lines up to the OK/NO/BYE that ends them."""

    def _init_caps(self) -> None:
        self._init_lines()
        self._caps: list[str] = []
        self._caps_size = 0

    def _read_caps_line(self) -> tuple[bytes, list[_Token], int] | None:
        """Collects capability lines; returns the first response line."""
        while True:
            logical = self._read_logical()
            if logical is None:
                return None
            _, raw, start = logical
            tokens = self._tokens(raw)
            if tokens and tokens[0].kind == "string":
                if any(t.kind != "string" for t in tokens) or len(tokens) > 2:
                    self._malformed("a capability line holds one or two strings", raw)
                self._caps_size += len(raw)
                if self._caps_size > self.max_buffer_size:
                    raise self._fail(
                        LimitExceededError(
                            "the capability list is over max_buffer_size",
                            protocol=self.protocol,
                            limit=self.max_buffer_size,
                        )
                    )
                self._caps.append(_capability(tokens))
                continue
            if not tokens or tokens[0].kind != "atom":
                self._malformed("expected a capability or a response", raw)
            return raw, tokens, start


def _response_text(tokens: list[_Token]) -> str:
    return " ".join(t.value.decode("utf-8", "replace") for t in tokens)


class ManageSieveClient(_CapabilityReader, _LineClient):
    """The client side of ManageSieve STARTTLS: reads the capability
    greeting (refusing a server that does not list STARTTLS), sends
    STARTTLS, reports :class:`~securepair.starttls.events.ReadyToUpgrade`
    on OK.  :meth:`followup` reads the capabilities the server sends
    unasked inside TLS."""

    protocol = "sieve"

    def __init__(
        self,
        *,
        allow_plaintext: bool = False,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            allow_plaintext=allow_plaintext,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        self._init_caps()

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            response = self._read_caps_line()
            if response is None:
                return
            raw, tokens, start = response
            status = tokens[0].value
            text = _response_text(tokens)
            if status == b"BYE":
                self._closed_by_peer(f"the server said {text}", raw)
            if self._step == "greeting":
                if status == b"OK":
                    names = {c.split(" ", 1)[0].upper() for c in self._caps}
                    self._caps = []
                    if "STARTTLS" in names:
                        self._send_command(b"STARTTLS\r\n")
                        self._step = "starttls"
                    else:
                        self._refuse(
                            "the server does not list STARTTLS in its capabilities",
                            b"",
                            not_offered=True,
                        )
                elif status == b"NO":
                    self._refuse(f"the server refused the session: {text}", raw)
                else:
                    self._malformed("the greeting does not end with OK", raw)
                continue
            if self._caps:
                self._malformed("capabilities in the reply to STARTTLS", raw)
            self._check_reply_start(start)
            if status == b"OK":
                self._upgrade()
            elif status == b"NO":
                self._refuse(f"the server refused STARTTLS: {text}", raw)
            else:
                self._malformed(f"unexpected reply {status!r} to STARTTLS", raw)

    def _make_followup(self) -> ManageSieveFollowup:
        return ManageSieveFollowup(
            max_line_length=self.max_line_length, max_buffer_size=self.max_buffer_size
        )


class ManageSieveFollowup(_CapabilityReader, Followup):
    """Client side: reads the capabilities the server sends unasked right
    after the TLS handshake (it sends nothing).  Server side (made by
    :meth:`ManageSieveServer.followup`): holds those capabilities in
    ``data_to_send()`` and is done at once."""

    protocol = "sieve"

    def __init__(
        self,
        *,
        send: bytes = b"",
        capabilities: Iterable[str] | None = None,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._init_caps()
        if send:
            self._send(send)
        if capabilities is not None:
            self._finish(capabilities)

    def _process(self) -> None:
        if self.done:
            return
        response = self._read_caps_line()
        if response is None:
            return
        raw, tokens, _ = response
        status = tokens[0].value
        if status == b"BYE":
            self._closed_by_peer(f"the server said {_response_text(tokens)}", raw)
        if status != b"OK":
            self._malformed("the capabilities inside TLS do not end with OK", raw)
        self._finish(self._caps)


class ManageSieveServer(_Lines, _LineServer):
    """The server side of ManageSieve STARTTLS.

    Sends the capability greeting at once: each of :attr:`capabilities`
    (``"NAME"`` or ``"NAME value"``) as a quoted string pair, STARTTLS, then
    ``OK``.  Starts TLS on STARTTLS.  With ``require_tls``, every command
    other than CAPABILITY, NOOP, LOGOUT and STARTTLS gets ``NO
    (ENCRYPT-NEEDED)``.  Answered by default: CAPABILITY, NOOP, LOGOUT.
    Others are :class:`~securepair.starttls.events.CommandReceived`
    (``raw`` holds the literals); answer with :meth:`reply`.  After
    ``start_tls()``, send :meth:`followup`'s ``data_to_send()`` first, as
    RFC 5804 2.2 requires.
    """

    protocol = "sieve"
    OWN_COMMANDS = frozenset({"CAPABILITY", "NOOP", "LOGOUT"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    ALLOWED_BEFORE_TLS = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS"})
    GO_AHEAD = b'OK "Begin TLS negotiation now."\r\n'
    UNKNOWN_REPLY = b'NO "Syntax error"\r\n'
    ARGUMENT_REPLY = b'NO "STARTTLS takes no arguments"\r\n'
    TLS_REQUIRED_REPLY = b'NO (ENCRYPT-NEEDED) "Must issue STARTTLS first"\r\n'
    REPLY_NAME = "a ManageSieve response"

    def __init__(
        self,
        *,
        greeting: str = "ManageSieve ready.",
        capabilities: Iterable[str] = (
            "IMPLEMENTATION securepair",
            "SASL ",
            "SIEVE fileinto vacation",
            "VERSION 1.0",
        ),
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
        with self._usage_errors():
            ok = f"OK {quote(greeting)}" if greeting else "OK"
        self._init_lines()
        self._send(self._caps_block(self.capabilities, tls=False) + ok.encode() + b"\r\n")

    def _is_tls_cap(self, capability: str) -> bool:
        return capability.split(" ", 1)[0].upper() == "STARTTLS"

    @staticmethod
    def _caps_block(capabilities: Iterable[str], *, tls: bool) -> bytes:
        lines = []
        caps = list(capabilities)
        if not tls:
            caps.append("STARTTLS")
        for cap in caps:
            name, sep, value = cap.partition(" ")
            lines.append(quote(name) + (" " + quote(value) if sep else "") + "\r\n")
        return "".join(lines).encode("utf-8")

    def reply(self, status: str, text: str = "", code: str | None = None) -> None:
        """Answer the waiting command: ``OK``, ``NO`` or ``BYE``, an optional
        response code in parentheses, and ``text`` as a quoted string."""
        status = status.upper()
        if status not in ("OK", "NO", "BYE"):
            raise StartTLSUsageError(
                f"status {status!r} is not OK, NO or BYE", protocol=self.protocol
            )
        with self._usage_errors():
            parts = [status]
            if code:
                parts.append(f"({check_text(code, 'response code')})")
            if text:
                parts.append(quote(text))
        self.reply_raw((" ".join(parts) + "\r\n").encode("utf-8"))

    def _framing_reply(self, what: str) -> None:
        self._send(f"BYE {quote('Syntax error: ' + what)}\r\n".encode())

    def _literal_too_large(self) -> None:
        self._send(b'BYE "Literal too large"\r\n')

    def _process(self) -> None:
        while self._state is State.NEGOTIATING and self._waiting is None:
            command = self._read_logical()
            if command is None:
                return
            line, raw, start = command
            verb_b, _, argument_b = line.partition(b" ")
            if not _ATOM.fullmatch(verb_b):
                self._send(self.UNKNOWN_REPLY)
                continue
            verb = verb_b.decode("ascii").upper()
            if verb == self.STARTTLS_VERB and len(raw) != len(line) + 2:
                self._send(self.ARGUMENT_REPLY)  # STARTTLS with a literal
                continue
            self._on_verb(verb, argument_b.decode("utf-8", "replace"), raw, start)

    def _answer(self, command: CommandReceived) -> None:
        verb = command.command
        if verb == "CAPABILITY":
            self._send(
                self._caps_block(self.capabilities, tls=False) + b'OK "Capability completed."\r\n'
            )
        elif verb == "NOOP":
            self._send(b'OK "NOOP completed."\r\n')
        elif verb == "LOGOUT":
            self._close(b'OK "Logout completed."\r\n')
        else:
            self._send(b'NO "Unknown command."\r\n')

    def answer_in_tls(self, line: bytes) -> bytes | None:
        """Inside TLS: ``NO`` to STARTTLS, CAPABILITY with the TLS
        capabilities; ``None`` otherwise."""
        verb = line.removesuffix(b"\r\n").partition(b" ")[0].upper()
        if verb == b"STARTTLS":
            return b'NO "TLS is already active."\r\n'
        if verb == b"CAPABILITY":
            return (
                self._caps_block(self.tls_capabilities, tls=True)
                + b'OK "Capability completed."\r\n'
            )
        return None

    def _make_followup(self) -> ManageSieveFollowup:
        return ManageSieveFollowup(
            send=self._caps_block(self.tls_capabilities, tls=True) + b"OK\r\n",
            capabilities=self.tls_capabilities,
            max_line_length=self.max_line_length,
            max_buffer_size=self.max_buffer_size,
        )
