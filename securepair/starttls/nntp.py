"""NNTP STARTTLS (RFC 4642; NNTP itself is RFC 3977).

The plaintext phase
===================
::

    S: 200 news.example.com ready (posting allowed)
    C: CAPABILITIES                                   (optional)
    S: 101 Capability list:
    S: VERSION 2
    S: READER
    S: STARTTLS
    S: .
    C: STARTTLS
    S: 382 Continue with TLS negotiation             the go-ahead
    C: <ClientHello> ...
    C: CAPABILITIES                                   inside TLS, again

Refusals: ``580 Can not initiate TLS negotiation``, ``502`` (not permitted,
or TLS already active), ``500``/``501``.  A server that requires TLS
answers the other commands with ``483`` (RFC 3977 3.2.1: encryption
required).  ``400`` means the service is going away.

Traps
=====
* **Command injection (server)**: commands pipelined behind STARTTLS are
  never executed (see :class:`~securepair.starttls.PipelinePolicy`);
  RFC 4642 2.2.2 itself says the client must not pipeline STARTTLS.
* **Response injection (client)**: any byte after ``382`` is an
  :class:`~securepair.starttls.errors.InjectionError`.
* **Stale capabilities**: RFC 4642 2.2.2 requires the client to discard
  what it learned and ask CAPABILITIES again (:meth:`NNTPClient.followup`).

Line limit: RFC 3977 3.1 caps command lines at 512 octets and responses'
first lines at 512; the default is 2048.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._base import DEFAULT_MAX_BUFFER_SIZE, PipelinePolicy, State
from ._text import _CommandFollowup, _LineClient, _LineServer, check_text, dot_body, read_dot_body
from .events import CommandReceived

__all__ = ["NNTPClient", "NNTPServer", "NNTPFollowup"]

_CODE = re.compile(rb"([1-5][0-9][0-9])(?: |$)")


class NNTPClient(_LineClient):
    """The client side of NNTP STARTTLS: reads the ``200``/``201``
    greeting, sends STARTTLS, reports
    :class:`~securepair.starttls.events.ReadyToUpgrade` on ``382``.
    :meth:`followup` sends CAPABILITIES inside TLS."""

    protocol = "nntp"
    default_max_line_length = 2048

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            start = self._consumed
            line = self._read_line()
            if line is None:
                return
            raw = line + b"\r\n"
            match = _CODE.match(line)
            if match is None:
                self._malformed("not an NNTP response line", raw)
            code = int(match.group(1))
            text = line.decode("utf-8", "replace")
            if code == 400:
                self._closed_by_peer(f"the server is going away: {text}", raw)
            if self._step == "greeting":
                if code in (200, 201):
                    self._send_command(b"STARTTLS\r\n")
                    self._step = "starttls"
                elif code >= 400:
                    self._refuse(f"the server refused the session: {text}", raw)
                else:
                    self._malformed(f"unexpected greeting {code}", raw)
                continue
            self._check_reply_start(start)
            if code == 382:
                self._upgrade()
            elif code >= 400:
                self._refuse(f"the server refused STARTTLS: {text}", raw)
            else:
                self._malformed(f"unexpected reply {code} to STARTTLS", raw)

    def _make_followup(self) -> NNTPFollowup:
        return NNTPFollowup(
            max_line_length=self.max_line_length, max_buffer_size=self.max_buffer_size
        )


def _is_101(line: bytes) -> bool:
    return line[:4] == b"101 " or line == b"101"


class NNTPFollowup(_CommandFollowup):
    """``CAPABILITIES`` again inside TLS."""

    protocol = "nntp"
    default_max_line_length = 2048

    COMMAND = b"CAPABILITIES\r\n"

    def _process(self) -> None:
        if self.done:
            return
        reply = read_dot_body(self, _is_101)
        if reply is None:
            return
        status, lines, raw = reply
        if not _is_101(status):
            self._malformed("CAPABILITIES failed inside TLS", raw)
        self._finish(line.decode("utf-8", "replace") for line in lines)


class NNTPServer(_LineServer):
    """The server side of NNTP STARTTLS.

    Sends ``200 greeting`` (``201`` with ``posting_allowed=False``) at
    once; answers CAPABILITIES with ``VERSION 2``, :attr:`capabilities` and
    STARTTLS; starts TLS on STARTTLS.  With ``require_tls``, every command
    other than CAPABILITIES, QUIT and STARTTLS gets ``483``.  Answered by
    default: CAPABILITIES, QUIT.  Others are
    :class:`~securepair.starttls.events.CommandReceived`; answer with
    :meth:`reply`.
    """

    protocol = "nntp"
    default_max_line_length = 2048
    OWN_COMMANDS = frozenset({"CAPABILITIES", "QUIT"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    ALLOWED_BEFORE_TLS = frozenset({"CAPABILITIES", "QUIT", "STARTTLS"})
    GO_AHEAD = b"382 Continue with TLS negotiation\r\n"
    UNKNOWN_REPLY = b"500 Unknown command\r\n"
    ARGUMENT_REPLY = b"501 STARTTLS takes no arguments\r\n"
    TLS_REQUIRED_REPLY = b"483 Encryption required: issue STARTTLS first\r\n"
    FRAMING_REPLY = "501 Syntax error: {}\r\n"
    REPLY_NAME = "an NNTP response"
    CAPABILITY_VERB = "CAPABILITIES"
    #: Inside TLS (RFC 4642 2.2.2).
    ALREADY_ACTIVE_REPLY = b"502 TLS is already active\r\n"

    def __init__(
        self,
        *,
        greeting: str = "NNTP server ready",
        posting_allowed: bool = True,
        capabilities: Iterable[str] = ("READER",),
        tls_capabilities: Iterable[str] | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        auto_answer: Iterable[str] | None = None,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            capabilities=[c for c in capabilities if not c.upper().startswith("VERSION")],
            tls_capabilities=(
                None
                if tls_capabilities is None
                else [c for c in tls_capabilities if not c.upper().startswith("VERSION")]
            ),
            require_tls=require_tls,
            policy=policy,
            auto_answer=auto_answer,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        self._check_greeting(greeting)
        code = 200 if posting_allowed else 201
        self._send(f"{code} {greeting}".rstrip().encode() + b"\r\n")

    def reply(self, code: int, text: str = "", lines: Iterable[str] | None = None) -> None:
        """Answer the waiting command with ``code text``, followed by a
        dot-terminated body when ``lines`` is given."""
        with self._usage_errors():
            if not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(f"reply code {code!r} is not a three-digit number")
            data = f"{code} {check_text(text)}".rstrip().encode("utf-8") + b"\r\n"
            if lines is not None:
                data += dot_body(lines)
        self.reply_raw(data)

    def _capability_reply(self, argument: str, capabilities: Iterable[str], *, tls: bool) -> bytes:
        lines = ["VERSION 2", *capabilities]
        if not tls:
            lines.append("STARTTLS")
        return b"101 Capability list:\r\n" + dot_body(lines)

    def _answer(self, command: CommandReceived) -> None:
        verb = command.command
        if verb == "CAPABILITIES":
            self._send(self._capability_reply("", self.capabilities, tls=False))
        elif verb == "QUIT":
            self._close(b"205 Connection closing\r\n")
        else:
            self._send(b"500 Unknown command\r\n")
