"""SMTP and LMTP STARTTLS (RFC 3207; LMTP is RFC 2033).

The plaintext phase
===================
::

    S: 220 mx.example.com ESMTP                    greeting
    C: EHLO client.example.org                     (LMTP: LHLO)
    S: 250-mx.example.com
    S: 250-PIPELINING
    S: 250 STARTTLS                                STARTTLS is an extension
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS                the go-ahead
    C: <ClientHello> ...                           TLS from here on
    C: EHLO client.example.org                     inside TLS, again

Refusals: ``454 4.7.0 TLS not available due to temporary reason``, ``501``
(syntax), ``502``/``500`` (unknown command), ``503`` (bad sequence), and
``530 5.7.0 Must issue a STARTTLS command first`` from a server that
requires TLS before anything else (RFC 3207 4).  ``421`` means the server
is closing.

Traps
=====
* **Command injection (server), Postfix CVE-2011-0411.**  Postfix read
  ``STARTTLS\\r\\nRSET\\r\\n`` into one buffer, started TLS, and then
  executed the ``RSET`` it had read *before* the handshake as if it had
  come through TLS: a man in the middle could prepend commands to the
  protected session.  The 2021 study "Why TLS is better without STARTTLS"
  (Poddebniak et al., USENIX Security) found the same bug in many other
  servers.  Here, bytes after ``STARTTLS\\r\\n`` are never parsed as
  commands; :class:`~securepair.starttls.PipelinePolicy` decides whether
  they become TLS input (the default, so the handshake fails on them),
  are dropped, or abort the connection.
* **Response injection (client).**  The mirror image: a man in the middle
  appends ``250 ...`` lines after the ``220`` go-ahead and a client that
  buffers them reads them as the first replies inside TLS.  The server
  must wait for the ClientHello, so any byte after the go-ahead is an
  :class:`~securepair.starttls.errors.InjectionError`; a reply that comes
  before the command it answers was sent is one too.
* **Stale capabilities.**  Everything learned before TLS (the EHLO
  keywords, SIZE, AUTH mechanisms) may have been forged; RFC 3207 4.2
  requires discarding it.  The client's :meth:`SMTPClient.followup` sends
  EHLO again inside TLS; a server must not offer STARTTLS inside TLS and
  refuses a second STARTTLS (:meth:`SMTPServer.answer_in_tls`).
* **STRIPTLS.**  A man in the middle can delete ``STARTTLS`` from the EHLO
  reply or answer ``454``.  The client treats both as a refusal: an error
  unless the caller allowed plaintext, never a silent fallback.
* **Bare line feeds** are refused on both sides (SMTP smuggling relies on
  lenient line endings).

Line limit: RFC 5321 4.5.3.1.4-5 caps command and reply lines at 512 bytes;
the default here is 2048, four times that, for servers with long greetings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from ._base import DEFAULT_MAX_BUFFER_SIZE, Followup, PipelinePolicy, State
from ._text import Reply, _LineClient, _LineServer, format_numeric_reply, read_numeric_reply
from .errors import StartTLSUsageError
from .events import CommandReceived

__all__ = ["SMTPClient", "SMTPServer", "LMTPClient", "LMTPServer", "SMTPFollowup"]


def _check_domain(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or " " in name or not name.isprintable():
        raise StartTLSUsageError(f"{what} {name!r} is not a host name", protocol="smtp")
    return name


def _keywords(lines: Sequence[bytes]) -> tuple[str, ...]:
    """The EHLO keywords (with their parameters) after the greeting line."""
    return tuple(line.decode("utf-8", "replace") for line in lines[1:])


class SMTPClient(_LineClient):
    """The client side of SMTP STARTTLS.

    ``local_hostname`` is what EHLO announces.  The client reads the
    greeting, sends EHLO, checks that STARTTLS is offered, sends STARTTLS
    and reports :class:`~securepair.starttls.events.ReadyToUpgrade` on the
    ``220``.  After ``start_tls()``, :meth:`followup` sends EHLO again
    inside TLS.
    """

    protocol = "smtp"
    default_max_line_length = 2048
    #: The hello command.
    HELLO: ClassVar[str] = "EHLO"

    def __init__(
        self,
        *,
        local_hostname: str = "localhost",
        allow_plaintext: bool = False,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            allow_plaintext=allow_plaintext,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        #: The name sent with EHLO (LHLO).
        self.local_hostname = _check_domain(local_hostname, "local_hostname")
        self._plaintext_capabilities: tuple[str, ...] = ()

    @property
    def plaintext_capabilities(self) -> tuple[str, ...]:
        """The EHLO keywords of the plaintext phase, for a caller that goes
        on in plaintext after a refusal (state PLAINTEXT); ``()`` in every
        other state: once TLS starts they are void (RFC 3207 4.2)."""
        if self._state is State.PLAINTEXT:
            return self._plaintext_capabilities
        return ()

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            reply = read_numeric_reply(self)
            if reply is None:
                return
            if self._step != "greeting":
                self._check_reply_start(reply.start)
            if reply.code == 421:
                self._closed_by_peer(f"the server is closing: {reply.text()}", reply.raw)
            getattr(self, f"_on_{self._step}")(reply)

    def _on_greeting(self, reply: Reply) -> None:
        if reply.code == 220:
            self._send_command(f"{self.HELLO} {self.local_hostname}\r\n".encode())
            self._step = "hello"
        elif reply.code >= 400:
            self._refuse(f"the server refused the session: {reply.text()}", reply.raw)
        else:
            self._malformed(f"unexpected greeting {reply.code}", reply.raw)

    def _on_hello(self, reply: Reply) -> None:
        if reply.code == 250:
            keywords = _keywords(reply.lines)
            self._plaintext_capabilities = keywords
            if any(k.split(" ", 1)[0].upper() == "STARTTLS" for k in keywords):
                self._send_command(b"STARTTLS\r\n")
                self._step = "starttls"
            else:
                self._refuse(
                    f"the server does not offer STARTTLS in its {self.HELLO} reply",
                    b"",
                    not_offered=True,
                )
        elif reply.code >= 400:
            self._refuse(
                f"the server refused {self.HELLO}, so it offers no STARTTLS: {reply.text()}",
                reply.raw,
                not_offered=True,
            )
        else:
            self._malformed(f"unexpected reply {reply.code} to {self.HELLO}", reply.raw)

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code == 220:
            self._upgrade()
        elif reply.code >= 400:
            self._refuse(f"the server refused STARTTLS: {reply.text()}", reply.raw)
        else:
            self._malformed(f"unexpected reply {reply.code} to STARTTLS", reply.raw)

    def _make_followup(self) -> SMTPFollowup:
        return SMTPFollowup(
            self.HELLO,
            self.local_hostname,
            protocol=self.protocol,
            max_line_length=self.max_line_length,
            max_buffer_size=self.max_buffer_size,
        )


class LMTPClient(SMTPClient):
    """The client side of LMTP STARTTLS: SMTP's, with LHLO (RFC 2033)."""

    protocol = "lmtp"
    HELLO = "LHLO"


class SMTPFollowup(Followup):
    """EHLO (LHLO) again inside TLS; reports the fresh keywords."""

    default_max_line_length = 2048

    def __init__(
        self,
        hello: str,
        local_hostname: str,
        *,
        protocol: str = "smtp",
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        self.protocol = protocol
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._hello = hello
        self._send(f"{hello} {local_hostname}\r\n".encode())

    def _process(self) -> None:
        if self.done:
            return
        reply = read_numeric_reply(self)
        if reply is None:
            return
        if reply.code == 421:
            self._closed_by_peer(f"the server is closing: {reply.text()}", reply.raw)
        if reply.code != 250:
            self._malformed(
                f"the server answered {self._hello} inside TLS with {reply.code}", reply.raw
            )
        self._finish(_keywords(reply.lines))


class SMTPServer(_LineServer):
    """The server side of SMTP STARTTLS.

    Sends the ``220`` greeting at once (``data_to_send()``), answers EHLO
    with ``hostname``, :attr:`capabilities` and STARTTLS, and starts TLS on
    ``STARTTLS``.  With ``require_tls`` (the default), every command other
    than EHLO, HELO, NOOP, QUIT and STARTTLS gets ``530 5.7.0 Must issue a
    STARTTLS command first`` (RFC 3207 4).  Answered by default
    (``auto_answer``): EHLO, HELO, NOOP, RSET, HELP and QUIT.  Other
    commands (only without ``require_tls``) are
    :class:`~securepair.starttls.events.CommandReceived` events; answer with
    :meth:`reply` or :meth:`release` the connection to a plaintext session.
    """

    protocol = "smtp"
    default_max_line_length = 2048
    HELLO: ClassVar[str] = "EHLO"
    OWN_COMMANDS = frozenset({"EHLO", "HELO", "LHLO", "NOOP", "RSET", "HELP", "QUIT"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS
    #: Allowed before STARTTLS when TLS is required (RFC 3207 4).
    ALLOWED_BEFORE_TLS: ClassVar[frozenset[str]] = frozenset(
        {"EHLO", "HELO", "NOOP", "QUIT", "STARTTLS"}
    )
    #: Hello commands this protocol does not accept (and the reply).
    WRONG_HELLO: ClassVar[frozenset[str]] = frozenset({"LHLO"})
    GO_AHEAD = b"220 2.0.0 Ready to start TLS\r\n"
    UNKNOWN_REPLY = b"500 5.5.2 Syntax error, command unrecognized\r\n"
    ARGUMENT_REPLY = b"501 5.5.4 Syntax error (no parameters allowed)\r\n"
    TLS_REQUIRED_REPLY = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
    FRAMING_REPLY = "500 5.5.2 Syntax error: {}\r\n"
    REPLY_NAME = "an SMTP reply"
    #: Inside TLS, EHLO (LHLO) is answered without STARTTLS (RFC 3207 4.2).
    ALREADY_ACTIVE_REPLY = b"503 5.5.1 Error: TLS already active\r\n"

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        greeting: str = "ESMTP ready",
        capabilities: Iterable[str] = (),
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
        #: The server's name, in the greeting and the EHLO reply.
        self.hostname = _check_domain(hostname, "hostname")
        self._check_greeting(greeting)
        self._greeted = False
        self._send(f"220 {self.hostname} {greeting}".rstrip(" ").encode() + b"\r\n")

    def _is_tls_cap(self, capability: str) -> bool:
        return capability.split(" ", 1)[0].upper() == "STARTTLS"

    # -- the application's replies

    def reply(self, code: int, text: str | Sequence[str] = "") -> None:
        """Answer the waiting command with ``code`` and one line of text
        (or several lines, sent as a multi-line reply)."""
        lines = [text] if isinstance(text, str) else list(text)
        with self._usage_errors():
            data = format_numeric_reply(code, lines)
        self.reply_raw(data)

    # -- commands

    def _refusal(self, verb: str) -> bytes | None:
        if verb in self.WRONG_HELLO:
            return f"500 5.5.1 Unknown command: use {self.HELLO}\r\n".encode()
        if self.require_tls and verb not in self._allowed_before_tls():
            return self.TLS_REQUIRED_REPLY
        return None

    def _dispatch(self, event: CommandReceived, start: int) -> None:
        if event.command in (self.HELLO, "HELO"):
            self._greeted = True
        super()._dispatch(event, start)

    def _allowed_before_tls(self) -> frozenset[str]:
        return self.ALLOWED_BEFORE_TLS

    def _on_starttls(self, argument: str) -> None:
        if argument:
            self._send(self.ARGUMENT_REPLY)
        elif not self._greeted:
            self._send(f"503 5.5.1 Error: send {self.HELLO} first\r\n".encode())
        else:
            self._switch(self.GO_AHEAD)

    def _capability_verb(self) -> str:
        return self.HELLO

    def _capability_reply(self, argument: str, capabilities: Iterable[str], *, tls: bool) -> bytes:
        if not argument.strip():
            return f"501 5.5.4 Syntax: {self.HELLO} hostname\r\n".encode()
        lines = [self.hostname, *capabilities]
        if not tls:
            lines.append("STARTTLS")
        return format_numeric_reply(250, lines)

    def _answer(self, command: CommandReceived) -> None:
        verb = command.command
        if verb == self.HELLO:
            self._send(self._capability_reply(command.argument, self.capabilities, tls=False))
        elif verb == "HELO":
            if command.argument.strip():
                self._send(f"250 {self.hostname}\r\n".encode())
            else:
                self._send(b"501 5.5.4 Syntax: HELO hostname\r\n")
        elif verb in ("NOOP", "RSET"):
            self._send(b"250 2.0.0 OK\r\n")
        elif verb == "HELP":
            self._send(b"214 2.0.0 See RFC 5321\r\n")
        elif verb == "QUIT":
            self._close(b"221 2.0.0 Bye\r\n")
        else:
            self._send(b"502 5.5.1 Command not implemented\r\n")


class LMTPServer(SMTPServer):
    """The server side of LMTP STARTTLS: SMTP's with LHLO (RFC 2033 4.1);
    HELO and EHLO are refused with ``500``."""

    protocol = "lmtp"
    HELLO = "LHLO"
    ALLOWED_BEFORE_TLS = frozenset({"LHLO", "NOOP", "QUIT", "STARTTLS"})
    WRONG_HELLO = frozenset({"EHLO", "HELO"})

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        greeting: str = "LMTP ready",
        capabilities: Iterable[str] = (),
        tls_capabilities: Iterable[str] | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        auto_answer: Iterable[str] | None = None,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            hostname=hostname,
            greeting=greeting,
            capabilities=capabilities,
            tls_capabilities=tls_capabilities,
            require_tls=require_tls,
            policy=policy,
            auto_answer=auto_answer,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
