"""The machinery every negotiator shares: buffers, states, the switch point.

Rules this file follows
=======================

* **Sans-IO.**  Bytes come in through ``receive_data()`` and go out through
  ``data_to_send()``; nothing here touches a socket, a clock or a thread.
* **Bounded.**  The receive buffer never holds more than ``max_buffer_size``
  unconsumed bytes and no line may be longer than ``max_line_length``;
  going over either is a :class:`~.errors.LimitExceededError`.  Input is
  taken in slices no larger than the room left, so even one huge
  ``receive_data()`` call never makes the buffer grow past its limit.
* **Linear.**  The line search resumes where it stopped (as in h11), and
  consumed bytes are dropped in amortised O(1).
* **Strict framing.**  Lines end in CRLF.  A bare CR, a bare LF or a NUL
  byte is a :class:`~.errors.StartTLSProtocolError`: accepting sloppy line
  ends is how SMTP smuggling and its cousins start.
* **One switch point.**  Every negotiator reaches the switch point through
  :meth:`Negotiator._switch` (server) or :meth:`ClientNegotiator._upgrade`
  (client); what happens to the bytes after it is decided in one place,
  :meth:`Negotiator._after_switch`.

The fences
----------
Two facts decide whether bytes are legitimate, and both come from the order
of ``receive_data()`` and ``data_to_send()`` calls, never from timing:

* A client sends a command when the transport takes it out of
  ``data_to_send()``.  Bytes received before that moment cannot be a reply
  to it.  A reply that starts before that stream offset (the *fence*) was
  sent before the server saw the command: a response injection.
* A server's go-ahead leaves when the transport takes it out of
  ``data_to_send()``.  Bytes received before that moment were pipelined
  behind the STARTTLS command (``STARTTLS\\r\\nRSET\\r\\n``); the
  :class:`PipelinePolicy` decides their fate.  Bytes received after it are
  the client's TLS handshake.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, NoReturn

from ..pair import Buffer, SecurePair
from .errors import (
    InjectionError,
    LimitExceededError,
    PeerClosedError,
    StartTLSError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
    excerpt,
)
from .events import (
    NEED_DATA,
    CapabilitiesReceived,
    CommandReceived,
    ConnectionClosed,
    Event,
    NeedData,
    ReadyToUpgrade,
    TLSRefused,
)

__all__ = [
    "Side",
    "State",
    "PipelinePolicy",
    "Negotiator",
    "ClientNegotiator",
    "ServerNegotiator",
    "Followup",
    "DEFAULT_MAX_BUFFER_SIZE",
]

#: Default limit of unconsumed input, in bytes.  The largest legitimate
#: plaintext-phase message is a capability reply (a few hundred bytes) or,
#: on a server, a pipelined TLS ClientHello: at most one 16 KiB record in
#: practice, 16 KiB + 2 KiB by the letter of RFC 8446, a little more with
#: post-quantum key shares.  64 KiB covers that with room to spare and
#: still caps what a hostile peer can make us hold per connection.
DEFAULT_MAX_BUFFER_SIZE = 64 * 1024

#: Where the offset of the fence is not known yet: the command is queued but
#: the transport has not taken it, so every reply is early.
_NOT_SENT = float("inf")


class Side(enum.Enum):
    """Which end of the connection a negotiator plays."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Where a negotiator is.

    NEGOTIATING -> UPGRADE -> UPGRADED is the path to TLS.  PLAINTEXT,
    CLOSED and ERROR end it without TLS.
    """

    #: The plaintext phase is under way.
    NEGOTIATING = "negotiating"
    #: The switch point is reached: send ``data_to_send()``, then call
    #: ``start_tls()``.
    UPGRADE = "upgrade"
    #: ``start_tls()`` returned the pair; the negotiator is finished.
    UPGRADED = "upgraded"
    #: No TLS, by explicit choice: the server refused and the client allowed
    #: plaintext, or a server let the client go on without TLS.  The caller
    #: owns the plaintext connection; ``trailing_data`` is its next input.
    PLAINTEXT = "plaintext"
    #: The conversation ended before TLS (QUIT, LOGOUT, EOF on a server).
    CLOSED = "closed"
    #: The peer broke the protocol or refused; close the connection.
    ERROR = "error"


class PipelinePolicy(enum.Enum):
    """What a server does with bytes that the client pipelined behind its
    STARTTLS command, before it could have seen the go-ahead.

    Whatever the policy, those bytes are never read as plaintext commands,
    before or after the handshake (Postfix CVE-2011-0411).
    """

    #: Hand them to TLS as the start of the handshake (the default).  A
    #: client that pipelines its ClientHello, which RFC 9051 allows, works;
    #: a pipelined command (``STARTTLS\\r\\nRSET\\r\\n``) makes the TLS
    #: handshake fail with :class:`~securepair.errors.NotTLSError`, which is
    #: exactly what should happen to it.
    TLS_INPUT = "tls_input"
    #: Discard them.  A pipelined ClientHello is lost too, so such clients
    #: hang until a timeout; counted in ``negotiator.dropped``.
    DROP = "drop"
    #: Raise :class:`~securepair.starttls.errors.InjectionError`: the
    #: strictest choice, for servers that would rather lose a pipelining
    #: client than accept anything unusual.
    ABORT = "abort"


class _Conversation:
    """Buffers, events and line reading shared by negotiators and follow-ups."""

    #: The protocol's short name; set by each protocol class.
    protocol: str = ""
    #: Default ``max_line_length`` of the protocol (its RFC's limit or a
    #: generous multiple of it, documented in the protocol module).
    default_max_line_length: ClassVar[int] = 8192

    def __init__(
        self,
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        if max_line_length is None:
            max_line_length = self.default_max_line_length
            if isinstance(max_buffer_size, int):
                max_line_length = min(max_line_length, max_buffer_size)
        for name, value in (
            ("max_line_length", max_line_length),
            ("max_buffer_size", max_buffer_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 64:
                raise StartTLSUsageError(
                    f"{name} must be an int of at least 64, not {value!r}",
                    protocol=self.protocol,
                )
        if max_line_length > max_buffer_size:
            raise StartTLSUsageError(
                f"max_line_length ({max_line_length}) is over max_buffer_size ({max_buffer_size})",
                protocol=self.protocol,
            )
        #: Longest line accepted, terminator included.
        self.max_line_length = max_line_length
        #: Most unconsumed input held at any time.
        self.max_buffer_size = max_buffer_size
        self._buf = bytearray()
        self._pos = 0  # start of the unconsumed bytes in _buf
        self._scan = 0  # where the line search resumes
        self._look = 0  # bytes read ahead (see _peek_line)
        self._acc: list[bytes] = []  # lines of a multi-line message read ahead
        self._acc_code = 0  # its reply code, for numeric replies
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._state = State.NEGOTIATING
        self._error: StartTLSError | None = None
        self._received = 0  # total bytes received
        self._consumed = 0  # stream offset of _buf[_pos]

    # ------------------------------------------------------------------
    # Public surface

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    def data_to_send(self) -> bytes:
        """Remove and return the bytes to send to the peer (``b""`` if none).

        Call it after every ``receive_data()`` and every reply, and send what
        it returns before anything else: the order of these calls is what
        the negotiator's injection checks rely on.
        """
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        self._sent()
        return data

    def next_event(self) -> Event | NeedData:
        """The oldest pending event, or :data:`~securepair.events.NEED_DATA`."""
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def events(self) -> Iterator[Event]:
        """Iterate over (and remove) the pending events."""
        while self._events:
            yield self._events.popleft()

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes that arrived from the peer; ``b""`` means EOF.

        Raises a :class:`~securepair.starttls.errors.StartTLSError`
        subclass when the peer breaks the protocol (the negotiator is then
        in the ERROR state for good), or
        :class:`~securepair.starttls.errors.StartTLSUsageError` when the
        negotiator is finished and the bytes belong to someone else.
        """
        view = memoryview(data).cast("B")
        self._check_receive()
        if not view:
            self._on_eof()
            return
        while view:
            if self._state is not State.NEGOTIATING:
                self._after_switch(bytes(view))
                return
            room = self.max_buffer_size - (len(self._buf) - self._pos)
            if room <= 0:
                raise self._fail(
                    LimitExceededError(
                        f"{self.max_buffer_size} bytes of input are waiting unprocessed "
                        "(max_buffer_size)",
                        protocol=self.protocol,
                        limit=self.max_buffer_size,
                        data=bytes(self._buf[self._pos : self._pos + 64]),
                    )
                )
            piece = view[:room]
            view = view[len(piece) :]
            self._buf += piece
            self._received += len(piece)
            self._run()

    # ------------------------------------------------------------------
    # Hooks for subclasses

    def _process(self) -> None:
        """Consume as much buffered input as the protocol allows."""
        raise TypeError(f"{type(self).__name__} does not define _process()")

    def _sent(self) -> None:
        """The transport just took the output (see the fences above)."""

    def _on_eof(self) -> None:
        raise self._fail(
            PeerClosedError(
                "the peer closed the connection" + self._eof_context(),
                protocol=self.protocol,
            )
        )

    def _eof_context(self) -> str:
        left = len(self._buf) - self._pos
        return f" ({left} bytes of an incomplete message were pending)" if left else ""

    def _after_switch(self, data: bytes) -> None:
        raise StartTLSUsageError(
            f"the negotiator is {self._state.value}; these bytes are not its to read",
            protocol=self.protocol,
        )

    def _check_receive(self) -> None:
        if self._state is State.ERROR:
            raise StartTLSUsageError(
                f"the negotiator failed earlier ({self._error}); close the connection",
                protocol=self.protocol,
            ) from self._error

    def _run(self) -> None:
        try:
            self._process()
        except StartTLSError as exc:
            if self._state is not State.ERROR:
                raise self._fail(exc) from None
            raise
        self._compact()

    # ------------------------------------------------------------------
    # Buffer helpers

    def _pending(self, limit: int = 64) -> bytes:
        """The first ``limit`` unconsumed bytes, copied (for messages: a
        view would pin the buffer's size)."""
        return bytes(self._buf[self._pos : self._pos + limit])

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _consume(self, count: int) -> bytes:
        start = self._pos
        end = start + count
        data = bytes(self._buf[start:end])
        self._pos = end
        self._consumed += count
        self._scan = max(self._scan, end)
        return data

    def _compact(self) -> None:
        pos = self._pos
        if pos and (pos == len(self._buf) or (pos > 4096 and pos * 2 > len(self._buf))):
            del self._buf[:pos]
            self._scan -= pos
            self._pos = 0

    def _take_rest(self) -> bytes:
        """Remove and return every unconsumed byte."""
        rest = bytes(self._buf[self._pos :])
        self._consumed += len(rest)
        self._buf.clear()
        self._pos = self._scan = self._look = 0
        return rest

    def _line_end(self, start: int | None = None) -> int:
        """Index just past the next CRLF of the line that starts at buffer
        index ``start`` (default: the first unconsumed byte), or -1 if the
        line is not complete.  Checks the framing rules and the line limit."""
        buf = self._buf
        if start is None:
            start = self._pos
        scan = max(self._scan, start)
        end = buf.find(b"\n", scan)
        limit = self.max_line_length
        if end < 0:
            self._scan = len(buf)
            if len(buf) - start > limit:
                self._line_too_long(start)
            return -1
        end += 1
        if end - start > limit:
            self._line_too_long(start)
        if end - start < 2 or buf[end - 2] != 0x0D:
            self._bad_framing("a bare LF (line feed without carriage return)", start, end)
        if buf.find(b"\r", start, end - 2) >= 0:
            self._bad_framing("a bare CR (carriage return without line feed)", start, end)
        if buf.find(b"\x00", start, end - 2) >= 0:
            self._bad_framing("a NUL byte", start, end)
        self._scan = end
        return end

    def _read_line(self) -> bytes | None:
        """The next line without its CRLF, consumed; ``None`` if incomplete."""
        end = self._line_end()
        if end < 0:
            return None
        line = self._consume(end - self._pos)
        return line[:-2]

    # Multi-line messages are read ahead without consuming them, so that an
    # incomplete message stays in the (bounded) buffer and a complete one is
    # consumed at once.  _look is the length of what was read ahead.

    def _peek_line(self) -> bytes | None:
        """The next line (without CRLF) after what was read ahead, or
        ``None`` if it is not complete yet.  Not consumed."""
        start = self._pos + self._look
        end = self._line_end(start)
        if end < 0:
            return None
        self._look = end - self._pos
        return bytes(self._buf[start : end - 2])

    def _peek_bytes(self, count: int) -> bytes | None:
        """The next ``count`` bytes after what was read ahead (a literal),
        or ``None`` if they are not all here.  Not consumed."""
        start = self._pos + self._look
        if len(self._buf) - start < count:
            return None
        self._look += count
        self._scan = max(self._scan, start + count)
        return bytes(self._buf[start : start + count])

    def _consume_looked(self) -> bytes:
        """Consume what was read ahead; returns it."""
        look, self._look = self._look, 0
        self._acc = []
        return self._consume(look)

    def _line_too_long(self, start: int) -> NoReturn:
        self._framing_reply("line too long")
        raise self._fail(
            LimitExceededError(
                f"a line is longer than {self.max_line_length} bytes (max_line_length)",
                protocol=self.protocol,
                limit=self.max_line_length,
                data=bytes(self._buf[start : start + 64]),
            )
        )

    def _bad_framing(self, what: str, start: int, end: int) -> NoReturn:
        self._framing_reply(what)
        raise self._fail(
            StartTLSProtocolError(
                f"the peer sent {what} in a line; lines must end in CRLF",
                protocol=self.protocol,
                data=bytes(self._buf[start:end]),
            )
        )

    def _framing_reply(self, what: str) -> None:
        """A server queues its protocol's error reply here before failing."""

    # ------------------------------------------------------------------
    # Output and errors

    def _send(self, data: bytes) -> None:
        self._out += data

    def _fail(self, error: StartTLSError) -> StartTLSError:
        """Enter ERROR; the caller raises what this returns."""
        if self._state is not State.ERROR:
            self._state = State.ERROR
            self._error = error
        return error

    def _malformed(self, message: str, data: bytes | bytearray | memoryview = b"") -> NoReturn:
        raise self._fail(StartTLSProtocolError(message, protocol=self.protocol, data=excerpt(data)))

    def _closed_by_peer(self, message: str, response: bytes = b"") -> NoReturn:
        raise self._fail(PeerClosedError(message, protocol=self.protocol, response=response))


class Negotiator(_Conversation):
    """Base class of every negotiator: one side of one protocol's plaintext
    phase, up to the byte where TLS starts.

    The driving loop is the same for every protocol and side::

        negotiator = SMTPClient(...)            # or any other negotiator
        send(negotiator.data_to_send())         # a server's greeting, say
        while negotiator.state is State.NEGOTIATING:
            negotiator.receive_data(recv())     # b"" when the peer closed
            for event in negotiator.events():
                ...                             # CommandReceived: reply()
            send(negotiator.data_to_send())
        if negotiator.state is State.UPGRADE:
            pair = negotiator.start_tls(config)
            # from now on every byte goes through pair.encrypted

    See the package documentation for the rules on each side.
    """

    #: Which side this negotiator plays.
    side: ClassVar[Side]

    def __init__(
        self,
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._pair: SecurePair | None = None
        self._tls_in = bytearray()
        self._trailing = b""
        self._eof_after_switch = False

    @property
    def pair(self) -> SecurePair | None:
        """The pair ``start_tls()`` made (also when feeding it the pipelined
        bytes raised: flush its ``encrypted`` side, then close), or ``None``."""
        return self._pair

    @property
    def trailing_data(self) -> bytes:
        """In the PLAINTEXT state: the bytes received after what the
        negotiator consumed, which belong to the plaintext protocol that
        goes on.  ``b""`` in every other state."""
        return self._trailing if self._state is State.PLAINTEXT else b""

    def start_tls(
        self,
        config: Any,
        *,
        server_hostname: str | None = None,
        session: Any = None,
    ) -> SecurePair:
        """Make the :class:`~securepair.SecurePair` that carries the
        connection from the switch point on, and finish the negotiator.

        Allowed in the UPGRADE state only, and only once ``data_to_send()``
        is empty: the go-ahead (or MySQL's SSLRequest) must be on its way
        before the first TLS byte.  ``config`` is what
        :class:`~securepair.SecurePair` takes (a
        :class:`~securepair.TLSConfig`, an ``ssl.SSLContext`` or an
        ``OpenSSL.SSL.Context``); ``server_hostname`` and ``session`` are
        passed on (client side).

        A server's pair gets, as its first input, the bytes that arrived
        after the STARTTLS command (see :class:`PipelinePolicy`).  If they
        are not TLS, the pair's error (such as
        :class:`~securepair.errors.NotTLSError`) propagates from here and
        :attr:`pair` still holds the failed pair, so its alert can be sent.
        """
        if self._state is not State.UPGRADE:
            raise StartTLSUsageError(
                f"start_tls() needs the UPGRADE state; the negotiator is {self._state.value}",
                protocol=self.protocol,
            )
        if self._out:
            raise StartTLSUsageError(
                "send data_to_send() first: the plaintext bytes must leave before "
                "the first TLS byte",
                protocol=self.protocol,
            )
        pair = SecurePair(
            config,
            server_side=self.side is Side.SERVER,
            server_hostname=self._tls_hostname(server_hostname),
            session=session,
        )
        self._pair = pair
        self._state = State.UPGRADED
        initial = bytes(self._tls_in)
        self._tls_in.clear()
        view = memoryview(initial)
        while view:
            taken = pair.encrypted.write(view)
            view = view[taken:]
        if self._eof_after_switch:
            pair.encrypted.write_eof()
        return pair

    def _tls_hostname(self, server_hostname: str | None) -> str | None:
        return server_hostname

    def _check_receive(self) -> None:
        super()._check_receive()
        if self._state in (State.UPGRADED, State.PLAINTEXT):
            where = (
                "feed the pair's encrypted side"
                if self._state is State.UPGRADED
                else "the plaintext connection is the caller's now (see trailing_data)"
            )
            raise StartTLSUsageError(
                f"the negotiator is finished ({self._state.value}): {where}",
                protocol=self.protocol,
            )


class ClientNegotiator(Negotiator):
    """The client side: asks for TLS and waits for the go-ahead.

    ``allow_plaintext=False`` (the default) makes a refusal an error
    (:class:`~securepair.starttls.errors.StartTLSRefusedError`).  With
    ``allow_plaintext=True`` a refusal is the
    :class:`~securepair.starttls.events.TLSRefused` event and the state
    PLAINTEXT: a result the caller must look at, never a silent fallback.

    Once the go-ahead is in, the server must wait for our ClientHello, so
    any further byte is an :class:`~securepair.starttls.errors.InjectionError`.
    After ``start_tls()``, everything learned in plaintext is void: call
    :meth:`followup` for the object that asks for the capabilities again
    inside TLS.
    """

    side = Side.CLIENT

    def __init__(
        self,
        *,
        allow_plaintext: bool = False,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        #: Whether a refusal is an event (True) or an error (False).
        self.allow_plaintext = allow_plaintext
        self._fence: float = 0

    def followup(self) -> Followup | None:
        """After ``start_tls()``: a new :class:`Followup` that asks the
        server for its capabilities again, to be driven over
        ``pair.cleartext`` (EHLO, CAPABILITY, CAPA, FEAT, a new XMPP stream;
        for ManageSieve it reads the capabilities the server sends unasked).
        ``None`` for protocols with nothing to refresh (LDAP, PostgreSQL,
        MySQL)."""
        if self._state is not State.UPGRADED:
            raise StartTLSUsageError(
                "followup() is for the TLS phase: call start_tls() first",
                protocol=self.protocol,
            )
        return self._make_followup()

    def _make_followup(self) -> Followup | None:
        return None

    # -- commands and the reply fence

    def _send_command(self, data: bytes) -> None:
        """Queue a command; replies may only start once it has been sent."""
        self._send(data)
        self._fence = _NOT_SENT

    def _sent(self) -> None:
        if self._fence == _NOT_SENT:
            self._fence = self._received

    def _check_reply_start(self, start: int, what: str = "reply") -> None:
        """Refuse a reply that starts at stream offset ``start`` if it was
        received before the command it answers was handed to the transport."""
        if start < self._fence:
            early = bytes(self._buf[self._pos : self._pos + 64])
            raise self._fail(
                InjectionError(
                    f"the server's {what} arrived before the command it answers was "
                    "sent: a response injection",
                    protocol=self.protocol,
                    injected=early,
                )
            )

    # -- outcomes

    def _upgrade(self) -> None:
        """The go-ahead is in: nothing may follow it."""
        if self._available():
            raise self._fail(
                InjectionError(
                    f"{self._available()} bytes followed the server's go-ahead; the "
                    "server must wait for our ClientHello, so they were injected",
                    protocol=self.protocol,
                    injected=self._pending(),
                )
            )
        self._state = State.UPGRADE
        self._events.append(ReadyToUpgrade())

    def _refuse(self, reason: str, response: bytes, *, not_offered: bool = False) -> None:
        """The server refused TLS (or did not offer it)."""
        if not self.allow_plaintext:
            cls = StartTLSNotOfferedError if not_offered else StartTLSRefusedError
            raise self._fail(
                cls(
                    f"{reason} (allow_plaintext=True makes this a TLSRefused event)",
                    protocol=self.protocol,
                    response=excerpt(response),
                )
            )
        self._trailing = self._take_rest()
        self._state = State.PLAINTEXT
        self._events.append(
            TLSRefused(response=bytes(response), reason=reason, not_offered=not_offered)
        )

    def _after_switch(self, data: bytes) -> None:
        if self._state is State.UPGRADE:
            raise self._fail(
                InjectionError(
                    f"{len(data)} bytes arrived after the server's go-ahead and before "
                    "our ClientHello: injected plaintext",
                    protocol=self.protocol,
                    injected=data,
                )
            )
        # PLAINTEXT reached in the middle of one receive_data() call.
        self._trailing += data

    def _on_eof(self) -> None:
        if self._state is State.UPGRADE:
            self._closed_by_peer("the server closed the connection after its go-ahead")
        super()._on_eof()


class ServerNegotiator(Negotiator):
    """The server side: offers TLS, answers the plaintext phase, and starts
    TLS when the client asks.

    What the negotiator answers by itself, and never shows the application:
    STARTTLS (the go-ahead, or a syntax error), and, with ``require_tls``,
    the RFC's refusal of every command that needs TLS first (SMTP ``530
    5.7.0 Must issue a STARTTLS command first``, IMAP ``NO
    [PRIVACYREQUIRED]``, ...).  What it answers by default, with the
    protocol's standard reply: the commands in ``auto_answer`` (capability
    commands, which always advertise STARTTLS; NOOP; QUIT and its kin).
    Every other command is a
    :class:`~securepair.starttls.events.CommandReceived` event that the
    application answers with :meth:`reply_raw`, the protocol's ``reply()``,
    :meth:`reply_default`, or :meth:`release` to take the plaintext
    connection over.  ``auto_answer=()`` shows the application every
    command it may answer, including the capability commands.
    """

    side = Side.SERVER
    #: Commands the negotiator can answer itself (upper case).
    OWN_COMMANDS: ClassVar[frozenset[str]] = frozenset()
    #: The subset answered without asking by default.
    DEFAULT_AUTO_ANSWER: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        capabilities: Iterable[str] = (),
        tls_capabilities: Iterable[str] | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        auto_answer: Iterable[str] | None = None,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        if not isinstance(policy, PipelinePolicy):
            raise StartTLSUsageError(
                f"policy must be a PipelinePolicy, not {policy!r}", protocol=self.protocol
            )
        if isinstance(capabilities, str) or isinstance(tls_capabilities, str):
            raise StartTLSUsageError(
                "capabilities are a list of strings, not one string", protocol=self.protocol
            )
        #: The plaintext-phase capabilities, without STARTTLS (the
        #: negotiator adds it).  May be changed while negotiating.
        self.capabilities: list[str] = [c for c in capabilities if not self._is_tls_cap(c)]
        for cap in self.capabilities:
            self._check_capability(cap)
        #: The capabilities to advertise inside TLS (never STARTTLS);
        #: defaults to :attr:`capabilities`.
        self.tls_capabilities: list[str] = [
            c
            for c in (self.capabilities if tls_capabilities is None else tls_capabilities)
            if not self._is_tls_cap(c)
        ]
        for cap in self.tls_capabilities:
            self._check_capability(cap)
        #: Refuse every command that needs TLS until STARTTLS.
        self.require_tls = require_tls
        #: What happens to bytes pipelined after STARTTLS.
        self.policy = policy
        answer = self.DEFAULT_AUTO_ANSWER if auto_answer is None else auto_answer
        answer = frozenset(a.upper() for a in answer)
        unknown = answer - self.OWN_COMMANDS
        if unknown:
            raise StartTLSUsageError(
                f"auto_answer: the negotiator cannot answer {sorted(unknown)}; it answers "
                f"{sorted(self.OWN_COMMANDS)}",
                protocol=self.protocol,
            )
        #: The commands answered without a CommandReceived event.
        self.auto_answer = answer
        #: Bytes discarded under PipelinePolicy.DROP.
        self.dropped = 0
        self._waiting: CommandReceived | None = None
        self._waiting_start = 0  # stream offset where the waiting command began
        self._goahead_sent = False

    # -- the application's hook

    @property
    def waiting(self) -> CommandReceived | None:
        """The command waiting for the application's answer, or ``None``."""
        return self._waiting

    def reply_raw(self, data: bytes) -> None:
        """Answer the waiting command with ``data``, sent as is.  Input
        that waited behind the command is processed now, which may queue
        more events."""
        self._require_waiting()
        self._check_raw(data)
        self._take_waiting()
        self._send(bytes(data))
        self._resume()

    def reply_default(self) -> None:
        """Answer the waiting command the way the negotiator would have:
        the capability reply (with STARTTLS), NOOP's OK, QUIT's goodbye, or
        the protocol's "command not recognised"."""
        command = self._take_waiting()
        self._answer(command)
        self._resume()

    def release(self) -> bytes:
        """Stop negotiating and hand the plaintext connection to the
        application (state PLAINTEXT).  Returns (and keeps as
        ``trailing_data``) every unconsumed byte, starting with the waiting
        command if there is one.  Only for servers that accept plaintext
        sessions: the caller now owns a connection that never got TLS."""
        if self._state is not State.NEGOTIATING:
            raise StartTLSUsageError(
                f"release() needs the NEGOTIATING state; the negotiator is {self._state.value}",
                protocol=self.protocol,
            )
        if self._waiting is not None:
            start = self._pos - (self._consumed - self._waiting_start)
            rest = bytes(self._buf[start:])
            self._buf.clear()
            self._pos = self._scan = self._look = 0
        else:
            rest = self._take_rest()
        self._waiting = None
        self._trailing = rest
        self._state = State.PLAINTEXT
        return rest

    def answer_in_tls(self, line: bytes) -> bytes | None:
        """Inside TLS, offer every command line (CRLF included) here first.

        Returns the reply the RFC prescribes for what the negotiator owns,
        now that TLS is active: a second STARTTLS is refused, and the
        capability commands list :attr:`tls_capabilities` without STARTTLS.
        Returns ``None`` for every other command: the application answers.
        """
        return None

    def followup(self) -> Followup | None:
        """After ``start_tls()``: the server's first exchange inside TLS,
        where the protocol has one, as a :class:`Followup` driven over
        ``pair.cleartext``: ManageSieve sends its capabilities unasked
        (RFC 5804 2.2), XMPP answers the client's new stream header with
        fresh stream features.  ``None`` for the other protocols (their
        clients ask; see :meth:`answer_in_tls`)."""
        if self._state is not State.UPGRADED:
            raise StartTLSUsageError(
                "followup() is for the TLS phase: call start_tls() first",
                protocol=self.protocol,
            )
        return self._make_followup()

    def _make_followup(self) -> Followup | None:
        return None

    # -- for subclasses

    def _emit_command(self, event: CommandReceived, start: int) -> None:
        """Report a command for the application and wait for its answer;
        ``start`` is the stream offset where the command began (see
        ``_consumed``), for :meth:`release`."""
        self._waiting = event
        self._waiting_start = start
        self._events.append(event)

    def _handle_command(self, event: CommandReceived, start: int) -> None:
        """Answer a command the negotiator owns, or ask the application."""
        if event.command.upper() in self.auto_answer:
            self._answer(event)
        else:
            self._emit_command(event, start)

    def _answer(self, command: CommandReceived) -> None:
        """Queue the protocol's standard reply to ``command``."""
        raise TypeError(f"{type(self).__name__} does not define _answer()")

    def _check_raw(self, data: bytes) -> None:
        """Reject a raw reply that would break the framing."""
        if not isinstance(data, bytes | bytearray):
            raise StartTLSUsageError(
                f"a reply is bytes, not {type(data).__name__}", protocol=self.protocol
            )

    def _require_waiting(self) -> CommandReceived:
        waiting = self._waiting
        if waiting is None or self._state is not State.NEGOTIATING:
            raise StartTLSUsageError("no command is waiting for a reply", protocol=self.protocol)
        return waiting

    def _take_waiting(self) -> CommandReceived:
        waiting = self._require_waiting()
        self._waiting = None
        return waiting

    def _resume(self) -> None:
        if self._state is State.NEGOTIATING:
            self._run()

    def _is_tls_cap(self, capability: str) -> bool:
        return capability.upper() == "STARTTLS"

    def _check_capability(self, capability: str) -> None:
        if not isinstance(capability, str) or not capability or not capability.isprintable():
            raise StartTLSUsageError(
                f"capability {capability!r} is not a printable string", protocol=self.protocol
            )

    def _switch(self, go_ahead: bytes) -> None:
        """STARTTLS accepted: queue the go-ahead and stop reading commands.

        Bytes still buffered were pipelined after the STARTTLS command.
        """
        self._send(go_ahead)
        self._state = State.UPGRADE
        self._goahead_sent = False
        rest = self._take_rest()
        if rest:
            self._pipelined(rest)
        self._events.append(ReadyToUpgrade(pipelined=len(self._tls_in) + self.dropped))

    def _sent(self) -> None:
        if self._state is State.UPGRADE:
            self._goahead_sent = True

    def _pipelined(self, data: bytes) -> None:
        policy = self.policy
        if policy is PipelinePolicy.TLS_INPUT:
            self._add_tls_input(data)
        elif policy is PipelinePolicy.DROP:
            self.dropped += len(data)
        else:
            raise self._fail(
                InjectionError(
                    f"{len(data)} bytes were pipelined after the STARTTLS command "
                    "(PipelinePolicy.ABORT)",
                    protocol=self.protocol,
                    injected=data,
                )
            )

    def _add_tls_input(self, data: bytes) -> None:
        if len(self._tls_in) + len(data) > self.max_buffer_size:
            raise self._fail(
                LimitExceededError(
                    f"more than {self.max_buffer_size} bytes arrived after STARTTLS "
                    "before start_tls() was called (max_buffer_size)",
                    protocol=self.protocol,
                    limit=self.max_buffer_size,
                )
            )
        self._tls_in += data

    def _after_switch(self, data: bytes) -> None:
        if self._state is State.UPGRADE:
            if self._goahead_sent:
                # The go-ahead left before these were read: the handshake.
                self._add_tls_input(data)
            else:
                self._pipelined(data)
        elif self._state is State.PLAINTEXT:
            self._trailing += data
        # CLOSED: the client said goodbye; whatever follows is ignored.

    def _on_eof(self) -> None:
        if self._state is State.UPGRADE:
            self._eof_after_switch = True
            return
        if self._state is State.NEGOTIATING:
            self._waiting = None
            self._state = State.CLOSED
            self._events.append(ConnectionClosed(reason="eof"))

    def _close(self, goodbye: bytes, reason: str = "quit") -> None:
        """Queue the goodbye and end the conversation."""
        self._send(goodbye)
        self._state = State.CLOSED
        self._take_rest()
        self._events.append(ConnectionClosed(reason=reason))


class Followup(_Conversation):
    """The first exchange inside TLS: the capabilities asked for again.

    Drive it over the pair's cleartext side exactly like a negotiator over
    the socket::

        followup = negotiator.followup()
        pair.cleartext.write(followup.data_to_send())    # EHLO, CAPA...
        ...                                              # pump the pair
        followup.receive_data(pair.cleartext.read())
        if followup.done:
            caps = followup.capabilities
            rest = followup.trailing_data                # the app's input

    It reports :class:`~securepair.starttls.events.CapabilitiesReceived`
    once; after that it is done and ``trailing_data`` holds the bytes that
    followed the capability reply.  Errors are the negotiators' errors.
    """

    def __init__(
        self,
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._capabilities: tuple[str, ...] | None = None
        self._trailing = b""

    @property
    def done(self) -> bool:
        """True once the capabilities are in."""
        return self._capabilities is not None

    @property
    def capabilities(self) -> tuple[str, ...] | None:
        """The capabilities the server sent inside TLS, or ``None`` yet."""
        return self._capabilities

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the capability reply: the application's."""
        return self._trailing

    def _finish(self, capabilities: Iterable[str]) -> None:
        self._capabilities = tuple(capabilities)
        self._trailing = self._take_rest()
        self._state = State.CLOSED
        self._events.append(CapabilitiesReceived(capabilities=self._capabilities))

    def _check_receive(self) -> None:
        super()._check_receive()
        if self.done:
            raise StartTLSUsageError(
                "the follow-up is done; its trailing_data and what follows are the application's",
                protocol=self.protocol,
            )

    def _after_switch(self, data: bytes) -> None:
        self._trailing += data
