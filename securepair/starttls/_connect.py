"""What the one-call STARTTLS helpers share, whatever does the I/O.

The helpers (:mod:`securepair.starttls.socket` for blocking sockets,
:mod:`securepair.starttls.asyncio` for asyncio streams and protocols) all
run the same three steps around a negotiator:

1. **Plaintext.**  Every byte received goes straight into the negotiator,
   and nowhere else, until ``start_tls()``: the negotiator alone decides what
   bytes after the switch point are (a server's TLS input, a client's
   :class:`~.errors.InjectionError`).  Its output is sent as soon as it is
   made.  On a server, each :class:`~.events.CommandReceived` goes to the
   application's handler, which answers it with the negotiator's
   ``reply()``, ``reply_raw()`` or ``reply_default()``; a command the
   handler left unanswered gets ``reply_default()``.
2. **Switch.**  ``start_tls()`` makes the pair; the adapter adopts it
   (``pair=``) with the pipelined TLS bytes already inside, and runs the
   handshake.
3. **Follow-up.**  Inside TLS, the capability step (EHLO, CAPABILITY, CAPA,
   FEAT, CAPABILITIES, a new XMPP stream; ManageSieve's unasked
   capabilities) runs over the TLS connection; the bytes that followed it
   are handed to the application first, so none is lost.

The helpers need TLS: a negotiation that ends without it is an error
(:class:`~.errors.StartTLSRefusedError` from the negotiator on a client;
:class:`~.errors.PeerClosedError` when a client quits or disconnects before
STARTTLS; :class:`~.errors.StartTLSUsageError` when the server side chose
plaintext with ``release()`` or ``require_tls=False``).  Drive the
negotiator yourself to serve plaintext sessions.  On every error the
connection is closed, after the negotiator's error reply or the TLS alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import PROTOCOLS
from ._base import ClientNegotiator, Followup, Negotiator, ServerNegotiator, State
from .errors import PeerClosedError, StartTLSUsageError
from .events import CommandReceived, ReadyToUpgrade
from .xmpp import XMPPClient

__all__ = [
    "CommandHandler",
    "StartTLSResult",
    "client_negotiator",
    "server_negotiator",
    "EventPump",
    "finish_command",
    "check_switch",
]

#: A server's hook for the plaintext commands the negotiator does not answer
#: itself: ``handler(negotiator, command)``.  It answers with the
#: negotiator's ``reply(...)``, ``reply_raw(data)`` or ``reply_default()``;
#: if it returns without answering, the helper calls ``reply_default()``
#: (the protocol's standard answer, or its "command not recognised").
CommandHandler = Callable[[ServerNegotiator, CommandReceived], Any]


@dataclass(frozen=True, eq=False)
class StartTLSResult:
    """What a one-call STARTTLS helper learned on the way to TLS."""

    #: The protocol's short name (``"smtp"``, ``"imap"``...).
    protocol: str
    #: The negotiator, finished (state UPGRADED).  A server keeps using it
    #: inside TLS: offer each command line to ``answer_in_tls()`` first.
    negotiator: ClientNegotiator | ServerNegotiator
    #: The capability follow-up that ran inside TLS, or ``None`` (a protocol
    #: with nothing to refresh, or ``followup=False``).
    followup: Followup | None
    #: Server: bytes the client sent behind its STARTTLS command before the
    #: go-ahead left, handed to TLS (a pipelined ClientHello) or dropped,
    #: as the negotiator's policy says.  Always 0 on a client.
    pipelined: int = 0

    @property
    def capabilities(self) -> tuple[str, ...] | None:
        """The capabilities exchanged inside TLS: on a client, what the
        server answered to EHLO / CAPABILITY / CAPA / FEAT / CAPABILITIES
        (or sent unasked: ManageSieve, XMPP features); on a server, what it
        sent (ManageSieve, XMPP).  ``None`` without a follow-up.  Nothing
        learned in plaintext is here."""
        return None if self.followup is None else self.followup.capabilities


def _spec(protocol: str) -> Any:
    if not isinstance(protocol, str):
        raise StartTLSUsageError(
            f"protocol is a name such as 'smtp' or a negotiator, not {protocol!r}", protocol=""
        )
    spec = PROTOCOLS.get(protocol.lower())
    if spec is None:
        raise StartTLSUsageError(
            f"unknown STARTTLS protocol {protocol!r}; known: {', '.join(PROTOCOLS)}",
            protocol=protocol,
        )
    return spec


def client_negotiator(
    protocol: str | ClientNegotiator, server_hostname: str | None
) -> ClientNegotiator:
    """The client negotiator for ``protocol``: a name (made with the
    protocol's defaults; XMPP's domain is ``server_hostname``) or a
    negotiator made by the caller, used as it is."""
    if isinstance(protocol, ClientNegotiator):
        negotiator = protocol
    else:
        spec = _spec(protocol)
        if spec.client is XMPPClient:
            if not server_hostname:
                raise StartTLSUsageError(
                    "XMPP needs the server's domain: pass server_hostname= or an XMPPClient",
                    protocol="xmpp",
                )
            negotiator = XMPPClient(server_hostname)
        else:
            negotiator = spec.client()
    if negotiator.allow_plaintext:
        raise StartTLSUsageError(
            "the one-call helpers need TLS; a negotiator with allow_plaintext=True is for "
            "callers that drive it themselves",
            protocol=negotiator.protocol,
        )
    _check_fresh(negotiator)
    return negotiator


def server_negotiator(
    protocol: str | ServerNegotiator | Callable[[], ServerNegotiator],
) -> ServerNegotiator:
    """The server negotiator for ``protocol``: a name (made with the
    protocol's defaults), a negotiator made by the caller, or a function
    that makes one."""
    if isinstance(protocol, ServerNegotiator):
        negotiator = protocol
    elif callable(protocol):
        negotiator = protocol()
        if not isinstance(negotiator, ServerNegotiator):
            raise StartTLSUsageError(
                f"the negotiator factory returned {negotiator!r}, not a ServerNegotiator",
                protocol="",
            )
    else:
        spec = _spec(protocol)
        if spec.server is None:
            raise StartTLSUsageError(f"{spec.name} has no server negotiator", protocol=spec.name)
        if spec.name == "xmpp":
            raise StartTLSUsageError(
                "an XMPP server needs its domain: pass XMPPServer('example.org')",
                protocol="xmpp",
            )
        negotiator = spec.server()
    _check_fresh(negotiator)
    return negotiator


def _check_fresh(negotiator: Negotiator) -> None:
    if negotiator.state is not State.NEGOTIATING:
        raise StartTLSUsageError(
            f"the negotiator is {negotiator.state.value}; a helper needs a new one",
            protocol=negotiator.protocol,
        )


class EventPump:
    """Takes a negotiator's events for a helper."""

    def __init__(self, negotiator: Negotiator) -> None:
        self.negotiator = negotiator
        #: ``ReadyToUpgrade.pipelined``, once the switch point is reached.
        self.pipelined = 0

    def commands(self) -> Iterator[CommandReceived]:
        """The pending events that need the application: the server's
        :class:`CommandReceived`.  The others are consumed (the state says
        the same).  Lazy: commands queued while one is answered come too."""
        for event in self.negotiator.events():
            if isinstance(event, CommandReceived):
                yield event
            elif isinstance(event, ReadyToUpgrade):
                self.pipelined = event.pipelined


def finish_command(negotiator: Negotiator, command: CommandReceived) -> None:
    """After the handler: a command it left unanswered gets the default."""
    if (
        isinstance(negotiator, ServerNegotiator)
        and negotiator.waiting is command
        and negotiator.state is State.NEGOTIATING
    ):
        negotiator.reply_default()


def check_switch(negotiator: Negotiator) -> None:
    """The plaintext phase is over: return at the switch point, raise for
    every other ending."""
    state = negotiator.state
    if state is State.UPGRADE:
        return
    if state is State.CLOSED:
        raise PeerClosedError(
            "the client ended the conversation before STARTTLS", protocol=negotiator.protocol
        )
    if state is State.PLAINTEXT:
        raise StartTLSUsageError(
            "the negotiation ended in plaintext (release(), or require_tls=False let the "
            "client go on without TLS); the one-call helpers need TLS: drive the negotiator "
            "yourself to serve plaintext sessions",
            protocol=negotiator.protocol,
        )
    raise StartTLSUsageError(  # pragma: no cover - NEGOTIATING, ERROR never get here
        f"the negotiator is {state.value}", protocol=negotiator.protocol
    )
