"""POP3 STLS (RFC 2595 4; capabilities are RFC 2449).

The plaintext phase
===================
::

    S: +OK POP3 server ready
    C: STLS
    S: +OK Begin TLS negotiation                      the go-ahead
    C: <ClientHello> ...
    C: CAPA                                           inside TLS, again
    S: +OK Capability list follows
    S: USER
    S: SASL PLAIN
    S: .

``-ERR`` refuses.  STLS is valid only in the AUTHORIZATION state, before
USER/PASS; a server that requires TLS refuses USER, PASS, APOP and AUTH
with ``-ERR [AUTH]`` until then.

Traps
=====
* **Command injection (server)**: ``STLS\\r\\nUSER alice\\r\\n`` must not run
  USER after the handshake (CVE-2011-0411's pattern; the 2021 "Why TLS is
  better without STARTTLS" study found it in POP3 servers too).  Bytes
  after STLS follow the :class:`~securepair.starttls.PipelinePolicy`.
* **Response injection (client)**: any byte after the ``+OK`` go-ahead is
  an :class:`~securepair.starttls.errors.InjectionError`.  POP3 clients
  that buffered a forged ``+OK`` for the next command inside TLS were a
  finding of the same study.
* **Stale capabilities**: the plaintext CAPA reply is void after TLS;
  :meth:`POP3Client.followup` sends CAPA again.

Line limit: RFC 2449 4 allows 512-octet response lines and 255-octet
commands; the default here is 2048 for both.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._base import DEFAULT_MAX_BUFFER_SIZE, PipelinePolicy, State
from ._text import _CommandFollowup, _LineClient, _LineServer, check_text, dot_body, read_dot_body
from .events import CommandReceived

__all__ = ["POP3Client", "POP3Server", "POP3Followup"]


def _ok(line: bytes) -> bool:
    return line == b"+OK" or line.startswith(b"+OK ")


def _err(line: bytes) -> bool:
    return line == b"-ERR" or line.startswith(b"-ERR ")


class POP3Client(_LineClient):
    """The client side of POP3 STLS: reads the ``+OK`` greeting, sends
    ``STLS`` and reports :class:`~securepair.starttls.events.ReadyToUpgrade`
    on ``+OK``.  :meth:`followup` sends CAPA inside TLS."""

    protocol = "pop3"
    default_max_line_length = 2048

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            start = self._consumed
            line = self._read_line()
            if line is None:
                return
            raw = line + b"\r\n"
            if self._step == "greeting":
                if _ok(line):
                    self._send_command(b"STLS\r\n")
                    self._step = "stls"
                elif _err(line):
                    self._refuse(f"the server refused the session: {line!r}", raw)
                else:
                    self._malformed("the greeting is neither +OK nor -ERR", raw)
                continue
            self._check_reply_start(start)
            if _ok(line):
                self._upgrade()
            elif _err(line):
                self._refuse(f"the server refused STLS: {line.decode('utf-8', 'replace')}", raw)
            else:
                self._malformed("the reply to STLS is neither +OK nor -ERR", raw)

    def _make_followup(self) -> POP3Followup:
        return POP3Followup(
            max_line_length=self.max_line_length, max_buffer_size=self.max_buffer_size
        )


class POP3Followup(_CommandFollowup):
    """``CAPA`` again inside TLS.  A server without CAPA (``-ERR``) gives an
    empty capability list."""

    protocol = "pop3"
    default_max_line_length = 2048

    COMMAND = b"CAPA\r\n"

    def _process(self) -> None:
        if self.done:
            return
        reply = read_dot_body(self, _ok)
        if reply is None:
            return
        status, lines, raw = reply
        if _ok(status):
            self._finish(line.decode("utf-8", "replace") for line in lines)
        elif _err(status):
            self._finish(())
        else:
            self._malformed("the reply to CAPA is neither +OK nor -ERR", raw)


class POP3Server(_LineServer):
    """The server side of POP3 STLS.

    Sends ``+OK greeting`` at once; answers CAPA with :attr:`capabilities`
    and STLS; starts TLS on STLS.  With ``require_tls``, USER, PASS, APOP
    and AUTH get ``-ERR [AUTH] Must issue STLS first`` and other commands
    but CAPA, NOOP, QUIT and STLS get ``-ERR``.  Answered by default: CAPA,
    NOOP, QUIT.  Others are :class:`~securepair.starttls.events.CommandReceived`;
    answer with :meth:`reply`.
    """

    protocol = "pop3"
    default_max_line_length = 2048
    OWN_COMMANDS = frozenset({"CAPA", "NOOP", "QUIT"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    ALLOWED_BEFORE_TLS = frozenset({"CAPA", "NOOP", "QUIT", "STLS"})
    STARTTLS_VERB = "STLS"
    GO_AHEAD = b"+OK Begin TLS negotiation\r\n"
    UNKNOWN_REPLY = b"-ERR Unknown command\r\n"
    ARGUMENT_REPLY = b"-ERR STLS takes no arguments\r\n"
    TLS_REQUIRED_REPLY = b"-ERR Must issue STLS first\r\n"
    FRAMING_REPLY = "-ERR Syntax error: {}\r\n"
    REPLY_NAME = "a POP3 reply"
    CAPABILITY_VERB = "CAPA"
    ALREADY_ACTIVE_REPLY = b"-ERR TLS is already active\r\n"

    def __init__(
        self,
        *,
        greeting: str = "POP3 server ready",
        capabilities: Iterable[str] = ("TOP", "UIDL", "RESP-CODES"),
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
        self._check_greeting(greeting)
        self._send(f"+OK {greeting}".rstrip().encode() + b"\r\n")

    def _is_tls_cap(self, capability: str) -> bool:
        return capability.upper() == "STLS"

    def reply(self, ok: bool, text: str = "", lines: Iterable[str] | None = None) -> None:
        """Answer the waiting command with ``+OK text`` or ``-ERR text``,
        followed by a dot-terminated body when ``lines`` is given."""
        with self._usage_errors():
            status = "+OK" if ok else "-ERR"
            data = f"{status} {check_text(text)}".rstrip().encode("utf-8") + b"\r\n"
            if lines is not None:
                data += dot_body(lines)
        self.reply_raw(data)

    def _refusal(self, verb: str) -> bytes | None:
        if (
            self.require_tls
            and verb not in self.ALLOWED_BEFORE_TLS
            and verb in ("USER", "PASS", "APOP", "AUTH")
        ):
            return b"-ERR [AUTH] Must issue STLS first\r\n"
        return super()._refusal(verb)

    def _capability_reply(self, argument: str, capabilities: Iterable[str], *, tls: bool) -> bytes:
        lines = list(capabilities)
        if not tls:
            lines.append("STLS")
        return b"+OK Capability list follows\r\n" + dot_body(lines)

    def _answer(self, command: CommandReceived) -> None:
        verb = command.command
        if verb == "CAPA":
            self._send(self._capability_reply("", self.capabilities, tls=False))
        elif verb == "NOOP":
            self._send(b"+OK\r\n")
        elif verb == "QUIT":
            self._close(b"+OK Bye\r\n")
        else:
            self._send(b"-ERR Unknown command\r\n")
