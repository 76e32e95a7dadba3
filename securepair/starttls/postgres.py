"""PostgreSQL ``SSLRequest`` (PostgreSQL protocol 3, "SSL Session Encryption").

The plaintext phase
===================
One message, one byte::

    C: 00 00 00 08 04 d2 16 2f        SSLRequest: length 8, code 80877103
    S: S                              the go-ahead ("N": no TLS here)
    C: <ClientHello> ...
    C: StartupMessage                 inside TLS, then the usual protocol

A server may also answer with an ErrorResponse (``E``...) when it does not
understand the request at all (servers older than 7.0); that message is
unauthenticated and is only shown, never trusted (CVE-2024-10977).  The
client may first send a ``GSSENCRequest`` (80877104), which a server
without GSSAPI answers with ``N``; PostgreSQL 17 clients may also skip the
request and start TLS directly ("direct SSL", ALPN ``postgresql``), which
the server accepts here only with ``direct_tls=True``.

Traps
=====
* **libpq CVE-2021-23222.**  libpq read the ``S`` and whatever followed it
  into one buffer, and later handed the extra bytes to the application as
  if they had come through TLS: a man in the middle could inject query
  responses.  Here any byte after ``S`` is an
  :class:`~securepair.starttls.errors.InjectionError`.
* **Server CVE-2021-23214.**  The server's twin bug: bytes the client sent
  after the SSLRequest were buffered and processed as the first messages of
  the encrypted session (an injected query).  Here they follow the
  :class:`~securepair.starttls.PipelinePolicy`: TLS input by default, so the
  handshake fails on them.
* **Plaintext startup.**  A StartupMessage without a preceding SSLRequest
  gets ``FATAL 28000`` when ``require_tls`` (pg_hba's ``hostssl``); without
  it, the server negotiator hands the plaintext connection to the caller
  (:class:`~securepair.starttls.events.PlaintextRequested`).

Limits: a startup packet may be at most 10000 bytes (the server's
``MAX_STARTUP_PACKET_LENGTH``).
"""

from __future__ import annotations

import struct
from typing import ClassVar

from ._base import (
    DEFAULT_MAX_BUFFER_SIZE,
    ClientNegotiator,
    PipelinePolicy,
    ServerNegotiator,
    State,
)
from .errors import StartTLSUsageError
from .events import PlaintextRequested, ReadyToUpgrade

__all__ = [
    "PostgreSQLClient",
    "PostgreSQLServer",
    "SSL_REQUEST",
    "GSSENC_REQUEST",
    "error_response",
]

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
#: Protocol 3.0 in a StartupMessage.
PROTOCOL_3 = 3 << 16
#: The server's MAX_STARTUP_PACKET_LENGTH.
MAX_STARTUP_PACKET = 10000

#: The SSLRequest message.
SSL_REQUEST = struct.pack("!ii", 8, SSL_REQUEST_CODE)
#: The GSSENCRequest message.
GSSENC_REQUEST = struct.pack("!ii", 8, GSSENC_REQUEST_CODE)


def error_response(code: str, message: str, severity: str = "FATAL") -> bytes:
    """An ErrorResponse message (``E``) with severity, SQLSTATE and text."""
    fields = b""
    for key, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message)):
        fields += key + value.encode("utf-8").replace(b"\0", b"") + b"\0"
    fields += b"\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


def _error_message(body: bytes) -> str:
    for field in body.split(b"\0"):
        if field[:1] == b"M":
            return field[1:].decode("utf-8", "replace")
    return "(no message)"


class PostgreSQLClient(ClientNegotiator):
    """The client side of PostgreSQL's SSLRequest: sends it at once
    (``data_to_send()``) and reports
    :class:`~securepair.starttls.events.ReadyToUpgrade` on ``S``.  ``N`` is
    a refusal (:class:`~securepair.starttls.errors.StartTLSNotOfferedError`
    unless ``allow_plaintext``; then send the StartupMessage in plaintext).
    After ``start_tls()``, send the StartupMessage through the pair."""

    protocol = "postgres"
    default_max_line_length = 64

    def __init__(
        self,
        *,
        allow_plaintext: bool = False,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(allow_plaintext=allow_plaintext, max_buffer_size=max_buffer_size)
        self._send_command(SSL_REQUEST)

    def _process(self) -> None:
        if self._state is not State.NEGOTIATING or not self._available():
            return
        start = self._consumed
        first = self._buf[self._pos]
        if first == 0x53:  # S
            self._check_reply_start(start)
            self._consume(1)
            self._upgrade()
        elif first == 0x4E:  # N
            self._check_reply_start(start)
            self._consume(1)
            self._refuse("the server does not support TLS (it answered N)", b"N", not_offered=True)
        elif first == 0x45:  # E: ErrorResponse
            if self._available() < 5:
                return
            (length,) = struct.unpack_from("!i", self._buf, self._pos + 1)
            if not 4 <= length <= MAX_STARTUP_PACKET:
                self._malformed("an ErrorResponse with a bad length", self._pending(16))
            if self._available() < 1 + length:
                return
            self._check_reply_start(start)
            raw = self._consume(1 + length)
            self._closed_by_peer(
                "the server answered the SSLRequest with an error (unauthenticated): "
                + _error_message(raw[5:]),
                raw,
            )
        else:
            self._malformed(
                f"the answer to SSLRequest is neither S nor N but {bytes((first,))!r}",
                self._pending(16),
            )


class PostgreSQLServer(ServerNegotiator):
    """The server side of PostgreSQL's SSLRequest.

    Answers ``SSLRequest`` with ``S`` and starts TLS; answers
    ``GSSENCRequest`` with ``N`` and waits for the next request.  A
    StartupMessage without TLS gets ``FATAL 28000`` when ``require_tls``
    (the default); otherwise it, like a CancelRequest, ends negotiation
    with :class:`~securepair.starttls.events.PlaintextRequested` and the
    message in ``trailing_data``.  With ``direct_tls=True`` a client that
    starts TLS right away (PostgreSQL 17 ``sslnegotiation=direct``) is
    accepted: configure ALPN ``postgresql`` in the TLS config.
    """

    protocol = "postgres"
    default_max_line_length = 64
    OWN_COMMANDS: ClassVar[frozenset[str]] = frozenset()
    DEFAULT_AUTO_ANSWER: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        require_tls: bool = True,
        direct_tls: bool = False,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(require_tls=require_tls, policy=policy, max_buffer_size=max_buffer_size)
        if max_buffer_size < MAX_STARTUP_PACKET:
            raise StartTLSUsageError(
                f"max_buffer_size must hold a startup packet ({MAX_STARTUP_PACKET} bytes)",
                protocol=self.protocol,
            )
        #: Accept a ClientHello without an SSLRequest.
        self.direct_tls = direct_tls

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            available = self._available()
            if not available:
                return
            if self.direct_tls and self._buf[self._pos] == 0x16:
                self._direct()
                return
            if available < 8:
                return
            length, code = struct.unpack_from("!ii", self._buf, self._pos)
            if not 8 <= length <= MAX_STARTUP_PACKET:
                self._malformed(f"invalid length of startup packet: {length}", self._pending(16))
            if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                if length != 8:
                    self._malformed("an SSLRequest/GSSENCRequest of length != 8")
                self._consume(8)
                if code == SSL_REQUEST_CODE:
                    self._switch(b"S")
                else:
                    self._send(b"N")
                continue
            if available < length:
                return
            if code == CANCEL_REQUEST_CODE:
                if length != 16:
                    self._malformed("a CancelRequest of length != 16", self._pending(16))
                self._plaintext("cancel")
            elif code >> 16 == 3:
                if self.require_tls:
                    self._send(error_response("28000", "TLS is required: send an SSLRequest first"))
                    self._close(b"", "refused")
                else:
                    self._plaintext("startup")
            else:
                self._send(
                    error_response(
                        "0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}"
                    )
                )
                self._malformed(f"unsupported frontend protocol code {code}")

    def _plaintext(self, kind: str) -> None:
        self._trailing = self._take_rest()
        self._state = State.PLAINTEXT
        self._events.append(PlaintextRequested(kind=kind))

    def _direct(self) -> None:
        """Direct TLS: the buffered bytes are the ClientHello, by design."""
        self._state = State.UPGRADE
        self._goahead_sent = True
        self._add_tls_input(self._take_rest())
        self._events.append(ReadyToUpgrade(pipelined=0))
