"""FTP ``AUTH TLS`` (RFC 4217, on RFC 2228's security extensions).

The plaintext phase
===================
::

    S: 220 FTP server ready
    C: FEAT                                           (optional)
    S: 211-Features:
    S:  AUTH TLS
    S:  PBSZ
    S:  PROT
    S: 211 End
    C: AUTH TLS
    S: 234 AUTH TLS successful                        the go-ahead
    C: <ClientHello> ...
    C: PBSZ 0                                         inside TLS
    S: 200 PBSZ=0
    C: PROT P                                         protect data channels
    S: 200 Protection level set to Private

Refusals: ``431`` (unavailable), ``500``/``502`` (unknown), ``504``
(mechanism not supported), ``534`` (policy).  ``421`` means the server is
closing.  A server that requires TLS answers USER, PASS and the rest with
``530`` until AUTH TLS; PBSZ and PROT before it get ``503`` (RFC 4217 8,
9).  Only the control connection is negotiated here; the data connections
are the application's (``PROT P`` makes them TLS too).

Traps
=====
* **Command injection (server)**: ``AUTH TLS\\r\\nUSER x\\r\\n`` must not run
  USER (see :class:`~securepair.starttls.PipelinePolicy`).
* **Response injection (client)**: any byte after ``234`` is an
  :class:`~securepair.starttls.errors.InjectionError`.
* **Multi-line replies** carry free text between their first and last
  line (RFC 959 4.2); only a line that starts with the same code and a
  space ends them.
* **Stale features**: :meth:`FTPClient.followup` sends FEAT inside TLS.

Line limit: RFC 959 sets none; the default is 8192.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._base import DEFAULT_MAX_BUFFER_SIZE, PipelinePolicy, State
from ._text import (
    Reply,
    _CommandFollowup,
    _LineClient,
    _LineServer,
    check_text,
    format_numeric_reply,
    read_ftp_reply,
)
from .events import CommandReceived

__all__ = ["FTPClient", "FTPServer", "FTPFollowup"]

#: AUTH arguments that mean TLS (RFC 4217 6; TLS-C and SSL are legacy
#: spellings that servers still accept).
_TLS_MECHANISMS = frozenset({"TLS", "TLS-C", "SSL"})


class FTPClient(_LineClient):
    """The client side of FTP AUTH TLS: reads the ``220`` greeting (after
    any ``120``), sends ``AUTH TLS``, reports
    :class:`~securepair.starttls.events.ReadyToUpgrade` on ``234``.
    :meth:`followup` sends FEAT inside TLS; then send ``PBSZ 0`` and
    ``PROT P`` yourself to protect the data connections."""

    protocol = "ftp"

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            reply = read_ftp_reply(self)
            if reply is None:
                return
            if reply.code == 421:
                self._closed_by_peer(f"the server is closing: {reply.text()}", reply.raw)
            if self._step == "greeting":
                self._on_greeting(reply)
            else:
                self._on_auth(reply)

    def _on_greeting(self, reply: Reply) -> None:
        if reply.code == 120:
            return  # "service ready in nnn minutes": the 220 follows
        if reply.code == 220:
            self._send_command(b"AUTH TLS\r\n")
            self._step = "auth"
        elif reply.code >= 400:
            self._refuse(f"the server refused the session: {reply.text()}", reply.raw)
        else:
            self._malformed(f"unexpected greeting {reply.code}", reply.raw)

    def _on_auth(self, reply: Reply) -> None:
        self._check_reply_start(reply.start)
        if reply.code == 234:
            self._upgrade()
        elif reply.code >= 400:
            self._refuse(
                f"the server refused AUTH TLS: {reply.code} {reply.text()}",
                reply.raw,
                not_offered=reply.code in (500, 502, 504),
            )
        else:
            self._malformed(f"unexpected reply {reply.code} to AUTH TLS", reply.raw)

    def _make_followup(self) -> FTPFollowup:
        return FTPFollowup(
            max_line_length=self.max_line_length, max_buffer_size=self.max_buffer_size
        )


class FTPFollowup(_CommandFollowup):
    """``FEAT`` again inside TLS.  A server without FEAT (``500``/``502``)
    gives an empty list."""

    protocol = "ftp"

    COMMAND = b"FEAT\r\n"

    def _process(self) -> None:
        if self.done:
            return
        reply = read_ftp_reply(self)
        if reply is None:
            return
        if reply.code == 421:
            self._closed_by_peer(f"the server is closing: {reply.text()}", reply.raw)
        if reply.code == 211:
            self._finish(line.decode("utf-8", "replace").strip() for line in reply.lines[1:-1])
        elif reply.code in (500, 502):
            self._finish(())
        else:
            self._malformed(f"unexpected reply {reply.code} to FEAT", reply.raw)


class FTPServer(_LineServer):
    """The server side of FTP AUTH TLS.

    Sends ``220 greeting`` at once; answers FEAT with AUTH TLS, PBSZ, PROT
    and :attr:`capabilities`; starts TLS on ``AUTH TLS`` (also ``TLS-C``
    and ``SSL``).  With ``require_tls``, every command other than FEAT,
    AUTH, NOOP, QUIT (and PBSZ/PROT, which get ``503``) gets ``530``.
    Answered by default: FEAT, NOOP, QUIT.  Others are
    :class:`~securepair.starttls.events.CommandReceived`; answer with
    :meth:`reply`.
    """

    protocol = "ftp"
    OWN_COMMANDS = frozenset({"FEAT", "NOOP", "QUIT"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    ALLOWED_BEFORE_TLS = frozenset({"FEAT", "NOOP", "QUIT", "AUTH", "PBSZ", "PROT"})
    STARTTLS_VERB = "AUTH"
    GO_AHEAD = b"234 AUTH TLS successful\r\n"
    UNKNOWN_REPLY = b"500 Syntax error, command unrecognized\r\n"
    ARGUMENT_REPLY = b"501 Syntax: AUTH TLS\r\n"
    TLS_REQUIRED_REPLY = b"530 TLS required: issue AUTH TLS first\r\n"
    FRAMING_REPLY = "500 Syntax error: {}\r\n"
    REPLY_NAME = "an FTP reply"
    #: Inside TLS, FEAT without AUTH TLS (PBSZ and PROT are the application's).
    CAPABILITY_VERB = "FEAT"
    ALREADY_ACTIVE_REPLY = b"503 TLS is already active\r\n"

    def __init__(
        self,
        *,
        greeting: str = "FTP server ready",
        capabilities: Iterable[str] = ("UTF8",),
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
        self._send(f"220 {greeting}".rstrip().encode() + b"\r\n")

    def _is_tls_cap(self, capability: str) -> bool:
        return capability.upper().split(" ")[0] in ("AUTH", "PBSZ", "PROT")

    def reply(self, code: int, text: str | Sequence[str] = "") -> None:
        """Answer the waiting command with ``code text`` (several lines make
        a multi-line reply with the code on every line, which RFC 959
        allows)."""
        lines = [text] if isinstance(text, str) else list(text)
        with self._usage_errors():
            data = format_numeric_reply(code, lines)
        self.reply_raw(data)

    def _on_starttls(self, argument: str) -> None:
        """``AUTH mechanism``: TLS for the TLS mechanisms."""
        mechanism = argument.strip().upper()
        if not mechanism:
            self._send(self.ARGUMENT_REPLY)
        elif mechanism in _TLS_MECHANISMS:
            self._switch(self.GO_AHEAD)
        else:
            self._send(b"504 Unknown AUTH type\r\n")

    def _refusal(self, verb: str) -> bytes | None:
        if verb in ("PBSZ", "PROT"):
            return b"503 Security data exchange not complete: AUTH TLS first\r\n"
        return super()._refusal(verb)

    def _capability_reply(self, argument: str, capabilities: Iterable[str], *, tls: bool) -> bytes:
        features = [] if tls else ["AUTH TLS"]
        features += ["PBSZ", "PROT", *capabilities]
        body = "".join(f" {check_text(f)}\r\n" for f in features)
        return f"211-Features:\r\n{body}211 End\r\n".encode()

    def _answer(self, command: CommandReceived) -> None:
        verb = command.command
        if verb == "FEAT":
            self._send(self._capability_reply("", self.capabilities, tls=False))
        elif verb == "NOOP":
            self._send(b"200 NOOP ok\r\n")
        elif verb == "QUIT":
            self._close(b"221 Goodbye\r\n")
        else:
            self._send(b"502 Command not implemented\r\n")
