"""MySQL / MariaDB SSL request, client side (the MySQL client/server protocol,
"Protocol::SSLRequest").

The plaintext phase
===================
The server speaks first, and the client's answer is the go-ahead::

    S: [len][seq 0] Initial Handshake v10: protocol 10, server version,
       connection id, auth-plugin-data (the scramble), capability flags
       (CLIENT_SSL = 0x800 if the server has TLS), charset, status...
    C: [32, 0, 0][seq 1] SSLRequest: capability flags with CLIENT_SSL,
       max packet size, charset, 23 zero bytes
    C: <ClientHello> ...
    C: [len][seq 2] HandshakeResponse41 (user, auth response...) inside TLS

There is no refusal message: a server without ``CLIENT_SSL`` cannot do TLS
(:class:`~securepair.starttls.errors.StartTLSNotOfferedError` unless
``allow_plaintext``).  An ERR packet (``0xff``) instead of the handshake
(for example "Host is blocked") means the server is closing.

Traps
=====
* **The handshake is not authenticated.**  Everything in the Initial
  Handshake, including the capability flags and the scramble, came in
  plaintext and may have been forged (stripping ``CLIENT_SSL`` is the
  classic downgrade, "BACKRONYM", CVE-2015-3152).  The client needs the
  scramble and the sequence number after TLS anyway (the protocol was
  designed that way), so :attr:`MySQLClient.server_handshake` keeps the
  parsed packet; treat it as untrusted, and use TLS-bound authentication
  (``caching_sha2_password`` over TLS sends the password inside TLS).
* **Injection.**  The server must wait for our SSLRequest and ClientHello;
  any byte after the Initial Handshake is an
  :class:`~securepair.starttls.errors.InjectionError`.
* **Matching flags.**  The HandshakeResponse sent after TLS must carry the
  same capability flags as the SSLRequest: use
  :attr:`MySQLClient.client_flags` and sequence id
  :attr:`MySQLClient.next_sequence_id`.

There is no server side here: MySQL servers are not commonly embedded, and
the brief is the client's SSL request.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._base import DEFAULT_MAX_BUFFER_SIZE, ClientNegotiator, State
from .errors import LimitExceededError, StartTLSUsageError

__all__ = [
    "MySQLClient",
    "MySQLHandshake",
    "CLIENT_SSL",
    "CLIENT_PROTOCOL_41",
    "DEFAULT_CLIENT_FLAGS",
    "ssl_request",
]

CLIENT_LONG_PASSWORD = 0x00000001
CLIENT_LONG_FLAG = 0x00000004
CLIENT_CONNECT_WITH_DB = 0x00000008
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_SSL = 0x00000800
CLIENT_TRANSACTIONS = 0x00002000
CLIENT_SECURE_CONNECTION = 0x00008000
CLIENT_MULTI_RESULTS = 0x00020000
CLIENT_PLUGIN_AUTH = 0x00080000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x00200000

#: The flags asked for by default (masked with the server's).
DEFAULT_CLIENT_FLAGS = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)

#: utf8mb4_general_ci, understood by MySQL 5.5+ and MariaDB.
DEFAULT_CHARACTER_SET = 45
#: The max_packet_size the client announces: 16 MiB.
DEFAULT_MAX_PACKET = 1 << 24


def ssl_request(
    client_flags: int, max_packet: int, character_set: int, sequence_id: int = 1
) -> bytes:
    """The SSLRequest packet (header included)."""
    payload = struct.pack("<IIB23x", client_flags, max_packet, character_set)
    return len(payload).to_bytes(3, "little") + bytes((sequence_id,)) + payload


@dataclass(frozen=True, slots=True)
class MySQLHandshake:
    """The server's Initial Handshake v10, as received (unauthenticated)."""

    protocol_version: int
    server_version: str
    connection_id: int
    #: The scramble: auth-plugin-data parts 1 and 2 (trailing NUL removed).
    auth_plugin_data: bytes
    capabilities: int
    character_set: int
    status_flags: int
    auth_plugin_name: str | None


class _Cursor:
    def __init__(self, client: MySQLClient, data: bytes) -> None:
        self.client = client
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            self.client._malformed("the Initial Handshake packet is cut short", self.data)
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def cstring(self, *, to_end: bool = False) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            if not to_end:
                self.client._malformed("an unterminated string in the handshake", self.data)
            end = len(self.data)
            value = self.data[self.pos :]
            self.pos = end
            return value
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def left(self) -> int:
        return len(self.data) - self.pos


class MySQLClient(ClientNegotiator):
    """The client side of MySQL's SSL request.

    Reads the Initial Handshake, checks ``CLIENT_SSL``, queues the
    SSLRequest (seq 1) and reports
    :class:`~securepair.starttls.events.ReadyToUpgrade` at once: send
    ``data_to_send()``, then ``start_tls()``.  Inside TLS, send the
    HandshakeResponse41 with :attr:`client_flags` and sequence id
    :attr:`next_sequence_id`, using :attr:`server_handshake` for the
    scramble and plugin name.
    """

    protocol = "mysql"
    default_max_line_length = 64

    def __init__(
        self,
        *,
        client_flags: int = DEFAULT_CLIENT_FLAGS,
        character_set: int = DEFAULT_CHARACTER_SET,
        max_packet_size: int = DEFAULT_MAX_PACKET,
        allow_plaintext: bool = False,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(allow_plaintext=allow_plaintext, max_buffer_size=max_buffer_size)
        for name, value, top in (
            ("client_flags", client_flags, 2**32),
            ("character_set", character_set, 256),
            ("max_packet_size", max_packet_size, 2**32),
        ):
            if not isinstance(value, int) or not 0 <= value < top:
                raise StartTLSUsageError(f"{name} out of range: {value!r}", protocol="mysql")
        self._wanted_flags = client_flags
        self.character_set = character_set
        self.max_packet_size = max_packet_size
        #: The flags sent in the SSLRequest (and to send again in the
        #: HandshakeResponse41); known once the handshake is read.
        self.client_flags = 0
        #: The server's Initial Handshake (unauthenticated), once read.
        self.server_handshake: MySQLHandshake | None = None
        #: The sequence id of the next packet: 2 (the HandshakeResponse41).
        self.next_sequence_id = 2
        # The server speaks first: nothing was sent, so nothing is early.
        self._fence = 0

    def _process(self) -> None:
        if self._state is not State.NEGOTIATING or self._available() < 4:
            return
        header = bytes(self._buf[self._pos : self._pos + 4])
        length = int.from_bytes(header[:3], "little")
        if header[3] != 0:
            self._malformed(f"the first packet has sequence id {header[3]}, not 0", header)
        if length == 0:
            self._malformed("an empty first packet", header)
        if length + 4 > self.max_buffer_size:
            raise self._fail(
                LimitExceededError(
                    f"an Initial Handshake of {length} bytes is over max_buffer_size",
                    protocol=self.protocol,
                    limit=self.max_buffer_size,
                    data=header,
                )
            )
        if self._available() < 4 + length:
            return
        packet = self._consume(4 + length)[4:]
        if packet[0] == 0xFF:
            self._server_error(packet)
        if packet[0] != 10:
            self._refuse(
                f"protocol version {packet[0]} (not 10) has no SSL request",
                packet[:64],
                not_offered=True,
            )
            return
        handshake = self._parse(packet)
        self.server_handshake = handshake
        caps = handshake.capabilities
        if not caps & CLIENT_SSL:
            self._refuse(
                "the server does not offer TLS (no CLIENT_SSL flag)", b"", not_offered=True
            )
            return
        if not caps & CLIENT_PROTOCOL_41:
            self._refuse(
                "the server does not speak protocol 4.1 (no CLIENT_PROTOCOL_41)",
                b"",
                not_offered=True,
            )
            return
        self.client_flags = (self._wanted_flags & caps) | CLIENT_SSL | CLIENT_PROTOCOL_41
        self._send(ssl_request(self.client_flags, self.max_packet_size, self.character_set))
        self._upgrade()

    def _server_error(self, packet: bytes) -> None:
        code = int.from_bytes(packet[1:3], "little") if len(packet) >= 3 else 0
        text = packet[3:]
        if text[:1] == b"#":
            text = text[6:]
        self._closed_by_peer(
            f"the server refused the connection: error {code}: " + text.decode("utf-8", "replace"),
            packet,
        )

    def _parse(self, packet: bytes) -> MySQLHandshake:
        cur = _Cursor(self, packet)
        cur.take(1)
        version = cur.cstring()
        (connection_id,) = struct.unpack("<I", cur.take(4))
        scramble = cur.take(8)
        if cur.take(1) != b"\0":
            self._malformed("the handshake's filler byte is not zero", packet[:64])
        caps = int.from_bytes(cur.take(2), "little")
        charset = status = 0
        plugin: str | None = None
        if cur.left():
            charset = cur.take(1)[0]
            status = int.from_bytes(cur.take(2), "little")
            caps |= int.from_bytes(cur.take(2), "little") << 16
            data_len = cur.take(1)[0]
            cur.take(10)  # reserved (MariaDB keeps extended flags here)
            if caps & CLIENT_SECURE_CONNECTION:
                part2 = cur.take(max(13, data_len - 8))
                scramble += part2[:-1] if part2.endswith(b"\0") else part2
            if caps & CLIENT_PLUGIN_AUTH:
                plugin = cur.cstring(to_end=True).decode("ascii", "replace")
        return MySQLHandshake(
            protocol_version=10,
            server_version=version.decode("utf-8", "replace"),
            connection_id=connection_id,
            auth_plugin_data=scramble,
            capabilities=caps,
            character_set=charset,
            status_flags=status,
            auth_plugin_name=plugin,
        )
