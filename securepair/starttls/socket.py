"""STARTTLS in one call over a blocking socket: connect (or accept),
negotiate, get a :class:`StartTLSSocket`.

Client::

    from securepair import TLSConfig
    from securepair.starttls.socket import starttls_client_socket

    config = TLSConfig(ca="ca.pem")
    with starttls_client_socket(("mx.example.com", 25), "smtp", config) as tls:
        print(tls.capabilities)      # the EHLO keywords, asked again inside TLS
        tls.sendall(b"MAIL FROM:<a@example.org>\\r\\n")

Server (one accepted connection)::

    def handler(negotiator, command):  # plaintext commands the app answers
        negotiator.reply(502, "5.5.1 not before STARTTLS")

    tls = starttls_server_socket(conn, "smtp", TLSConfig(cert=..., key=...),
                                 handler=handler)
    # tls is TLS now; offer each command line to
    # tls.starttls.negotiator.answer_in_tls(line) first (EHLO, STARTTLS)

How it works (see :mod:`securepair.starttls._connect`): the plaintext phase
reads from the socket into the negotiator only; at the switch point the
negotiator's pair, which already holds the bytes the peer sent after its
STARTTLS, is adopted by a :class:`~securepair.socket.TLSSocket`; the
capability follow-up then runs inside TLS.  Bytes that arrived behind the
follow-up's reply are returned first by ``recv()``.

The socket's timeout mode is kept (``None`` blocks; ``t > 0`` bounds each
operation); a non-blocking socket is refused.  On any error the socket is
closed, after the negotiator's error reply or the TLS alert.
"""

from __future__ import annotations

import contextlib
import socket as _socket
import ssl
from typing import Any

from .._adapters import ALERT_FLUSH_TIMEOUT, Buffer, ssl_compatible
from ..config import TLSConfig
from ..errors import SecurePairError
from ..socket import TLSSocket, _send_bounded, _wait_fd
from ._base import ClientNegotiator, Negotiator, ServerNegotiator, Side, State
from ._connect import (
    CommandHandler,
    EventPump,
    StartTLSResult,
    check_switch,
    client_negotiator,
    finish_command,
    server_negotiator,
)

__all__ = [
    "StartTLSSocket",
    "StartTLSResult",
    "CommandHandler",
    "starttls_client_socket",
    "starttls_server_socket",
]

#: Bytes asked from the socket per read in the plaintext phase: the
#: negotiators' default buffer limit, so one read never holds more than a
#: negotiator accepts at once.
PLAINTEXT_RECV_SIZE = 64 * 1024

Config = TLSConfig | ssl.SSLContext | Any


class StartTLSSocket(TLSSocket):
    """A :class:`~securepair.socket.TLSSocket` reached through STARTTLS.

    :attr:`starttls` holds what the negotiation learned (the negotiator,
    the follow-up, :attr:`capabilities`).  Cleartext that arrived right
    behind the follow-up's reply is returned first by ``recv()``,
    ``recv_into()`` and the files of ``makefile()``.
    """

    #: What the negotiation learned; set by the helpers.
    starttls: StartTLSResult

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._prefix = b""
        super().__init__(*args, **kwargs)

    @property
    def capabilities(self) -> tuple[str, ...] | None:
        """The capabilities exchanged inside TLS (see
        :attr:`StartTLSResult.capabilities`)."""
        return self.starttls.capabilities

    def _take_prefix(self, size: int) -> bytes:
        data = self._prefix[:size]
        self._prefix = self._prefix[len(data) :]
        return data

    def pending(self) -> int:
        """Decrypted bytes ready to be read without touching the socket."""
        return len(self._prefix) + super().pending()

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """``TLSSocket.recv``, after the bytes that followed the follow-up."""
        if self._prefix and buflen and not flags:
            return self._take_prefix(buflen)
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """``TLSSocket.recv_into``, after the bytes that followed the
        follow-up."""
        if self._prefix and not flags:
            view = memoryview(buffer).cast("B")
            data = self._take_prefix(min(nbytes or len(view), len(view)))
            view[: len(data)] = data
            return len(data)
        return super().recv_into(buffer, nbytes, flags)


def _close(sock: _socket.socket, negotiator: Negotiator | None = None) -> None:
    """Send what a server negotiator still has (its error reply), then
    close.  The connection is being abandoned: a failure to say goodbye
    changes nothing, so it is ignored."""
    with contextlib.suppress(OSError, SecurePairError):
        if negotiator is not None and negotiator.side is Side.SERVER:
            out = negotiator.data_to_send()
            if out:
                _send_bounded(sock, out, ALERT_FLUSH_TIMEOUT)
        sock.shutdown(_socket.SHUT_WR)
    sock.close()


def _negotiate(sock: _socket.socket, pump: EventPump, handler: CommandHandler | None) -> None:
    """The plaintext phase, up to the switch point."""
    negotiator = pump.negotiator
    while True:
        for command in pump.commands():
            if handler is not None:
                handler(negotiator, command)  # type: ignore[arg-type]
            finish_command(negotiator, command)
        out = negotiator.data_to_send()
        if out:
            sock.sendall(out)
        if negotiator.state is not State.NEGOTIATING:
            check_switch(negotiator)
            break
        negotiator.receive_data(sock.recv(PLAINTEXT_RECV_SIZE))
    if negotiator.side is Side.CLIENT:
        # The server must now wait for our ClientHello: whatever the kernel
        # already holds came after the go-ahead in another segment, and is
        # the negotiator's to refuse (InjectionError), not TLS input.
        while _wait_fd(sock, False, 0):
            negotiator.receive_data(sock.recv(PLAINTEXT_RECV_SIZE))


def _upgrade(
    sock: _socket.socket,
    negotiator: ClientNegotiator | ServerNegotiator,
    config: Config,
    *,
    handler: CommandHandler | None = None,
    server_hostname: str | None = None,
    session: Any = None,
    followup: bool = True,
) -> StartTLSSocket:
    if sock.gettimeout() == 0.0:
        raise ValueError("the STARTTLS helpers block: give a blocking socket or one with a timeout")
    pump = EventPump(negotiator)
    try:
        _negotiate(sock, pump, handler)
    except BaseException:
        _close(sock, negotiator)
        raise
    try:
        pair = negotiator.start_tls(config, server_hostname=server_hostname, session=session)
    except SecurePairError as exc:
        # The bytes the client pipelined behind STARTTLS were not TLS: its
        # alert goes out, then the connection closes.
        failed = negotiator.pair
        if failed is not None:
            with contextlib.suppress(OSError, SecurePairError):
                _send_bounded(sock, failed.encrypted.read(), ALERT_FLUSH_TIMEOUT)
        _close(sock)
        raise ssl_compatible(exc) from None
    server_side = negotiator.side is Side.SERVER
    try:
        tls = StartTLSSocket(
            sock,
            config,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname,
            pair=pair,
        )
    except BaseException:
        # TLSSocket sent the alert and left the socket to us.
        _close(sock)
        raise
    try:
        step = negotiator.followup() if followup or server_side else None
        if step is not None:
            out = step.data_to_send()
            if out:
                tls.sendall(out)
            while not step.done:
                step.receive_data(tls.recv(PLAINTEXT_RECV_SIZE))
                out = step.data_to_send()
                if out:
                    tls.sendall(out)
            tls._prefix = step.trailing_data
        tls.starttls = StartTLSResult(negotiator.protocol, negotiator, step, pump.pipelined)
    except BaseException:
        tls.close()
        raise
    return tls


def starttls_client_socket(
    sock_or_address: _socket.socket | tuple[str, int],
    protocol: str | ClientNegotiator,
    config: Config,
    *,
    server_hostname: str | None = None,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    session: Any = None,
    followup: bool = True,
) -> StartTLSSocket:
    """Connect (or take a connected socket), negotiate STARTTLS as a client,
    complete the TLS handshake and ask for the capabilities again inside
    TLS; return the :class:`StartTLSSocket`.

    ``protocol`` is a name from :data:`~securepair.starttls.PROTOCOLS`
    (``"smtp"``, ``"imap"``, ``"pop3"``, ``"ftp"``...) or a client
    negotiator made with the options you want (``SMTPClient(
    local_hostname=...)``).  ``server_hostname`` is the name verified and
    sent as SNI; it defaults to the host of ``sock_or_address`` (XMPP: the
    domain).  ``timeout`` is the socket's timeout (also for connecting);
    ``None`` keeps a given socket's mode.  ``followup=False`` skips the
    capability step (the caller sends EHLO itself).

    Raises the negotiator's errors (:class:`~.errors.StartTLSRefusedError`,
    :class:`~.errors.InjectionError`...) and the TLS errors; the socket is
    closed on every error.
    """
    if isinstance(sock_or_address, _socket.socket):
        sock = sock_or_address
        try:
            negotiator = client_negotiator(protocol, server_hostname)
        except BaseException:
            sock.close()
            raise
        if timeout is not None:
            sock.settimeout(timeout)
    else:
        if server_hostname is None:
            server_hostname = sock_or_address[0]
        negotiator = client_negotiator(protocol, server_hostname)
        sock = _socket.create_connection(
            sock_or_address, timeout=timeout, source_address=source_address
        )
    return _upgrade(
        sock,
        negotiator,
        config,
        server_hostname=server_hostname,
        session=session,
        followup=followup,
    )


def starttls_server_socket(
    sock: _socket.socket,
    protocol: str | ServerNegotiator,
    config: Config,
    *,
    handler: CommandHandler | None = None,
    timeout: float | None = None,
) -> StartTLSSocket:
    """Serve the plaintext phase on an accepted socket, offering STARTTLS,
    and return the :class:`StartTLSSocket` once the client has taken it
    and the handshake is complete.

    ``protocol`` is a name (the negotiator's defaults) or a server
    negotiator made with the options you want (``IMAPServer(
    capabilities=[...])``, ``XMPPServer("example.org")``).  ``handler``
    answers the plaintext commands the negotiator does not answer itself
    (see :data:`~securepair.starttls._connect.CommandHandler`); without
    one, they get the protocol's default reply.  ManageSieve's and XMPP's
    first message inside TLS is sent (and, for XMPP, the client's new
    stream read) before this returns.

    Inside TLS, offer each command line to
    ``tls.starttls.negotiator.answer_in_tls(line)`` first: it answers a
    second STARTTLS and the capability commands without STARTTLS.
    """
    if timeout is not None:
        sock.settimeout(timeout)
    try:
        negotiator = server_negotiator(protocol)
    except BaseException:
        sock.close()
        raise
    return _upgrade(sock, negotiator, config, handler=handler)
