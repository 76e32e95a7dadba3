"""STARTTLS for every protocol that has it: sans-IO negotiators for the
plaintext phase, client and server side, that hand over to a
:class:`~securepair.SecurePair` at exactly the right byte.

Theory of operation
===================

A negotiator plays one side of one protocol from the first byte of the
connection to the *switch point*: the byte where TLS starts.  Like the
pair, it does no I/O; a transport drives it with three calls:

``receive_data(data)``
    Bytes that arrived from the peer (``b""``: the connection ended).
``data_to_send() -> bytes``
    Bytes to send to the peer, drained.  Call it after every other call,
    and send its bytes before anything else.
``next_event()`` / ``events()``
    What happened (:mod:`securepair.starttls.events`).

and watches ``state`` (:class:`State`): NEGOTIATING, then UPGRADE (the
switch point: :class:`~.events.ReadyToUpgrade`), then, after
``start_tls(config) -> SecurePair``, UPGRADED.  From then on every byte of
the connection goes through the pair's ``encrypted`` side; the negotiator is
finished.  PLAINTEXT (TLS refused and plaintext explicitly allowed, or a
server that let the client go on without TLS), CLOSED (the client quit) and
ERROR end the negotiation without TLS.

A client, over a blocking socket (the adapters do exactly this)::

    neg = SMTPClient(local_hostname="client.example.org")
    sock.sendall(neg.data_to_send())    # empty for SMTP; XMPP, LDAP and
                                        # PostgreSQL clients speak first
    while neg.state is State.NEGOTIATING:
        neg.receive_data(sock.recv(65536))  # refusal, injection: typed errors
        sock.sendall(neg.data_to_send())
    pair = neg.start_tls(config, server_hostname="mx.example.com")
    # drive the pair from now on; then, inside TLS:
    followup = neg.followup()           # EHLO again: capabilities are fresh

The whole dance is one call per adapter: :mod:`securepair.starttls.socket`
(``starttls_client_socket``, ``starttls_server_socket``) and
:mod:`securepair.starttls.asyncio` (``open_starttls_connection``,
``accept_starttls``, ``create_starttls_connection``,
``starttls_server_protocol``).

A server gives the application the commands it has to answer itself as
:class:`~.events.CommandReceived` events (answer with ``reply(...)``,
``reply_raw(bytes)``, ``reply_default()`` or ``release()``), answers
STARTTLS and the RFC-mandated refusals itself, and advertises STARTTLS in
its capability replies.

The security rules, by construction
-----------------------------------

Bytes received before the switch point are never delivered as
post-upgrade cleartext (Postfix CVE-2011-0411, libpq CVE-2021-23222,
PostgreSQL CVE-2021-23214, and the many servers and clients of the 2021
study "Why TLS is better without STARTTLS", Poddebniak et al., USENIX
Security 2021):

* **Server side.**  Bytes that arrive after the STARTTLS command are never
  parsed as commands.  :class:`PipelinePolicy` decides what becomes of the
  ones that were pipelined behind it, before the go-ahead was sent: TLS
  handshake input (the default: a client that pipelines its ClientHello
  works, and ``STARTTLS\\r\\nRSET\\r\\n`` makes the handshake fail), dropped,
  or an :class:`~.errors.InjectionError`.  Bytes that arrive after the
  go-ahead was taken out of ``data_to_send()`` are always TLS input.
* **Client side.**  The TLS client speaks first, so any byte after the
  server's go-ahead is an :class:`~.errors.InjectionError`; so is a reply
  that arrived before the command it answers was handed to the transport.
* **Nothing learned in plaintext survives.**  Greeting, capabilities,
  untagged IMAP responses are read and forgotten.  After the upgrade the
  client asks again (:meth:`ClientNegotiator.followup`: EHLO, CAPABILITY,
  CAPA, FEAT, CAPABILITIES, a new XMPP stream; ManageSieve reads what the
  server sends unasked).  A server offers no STARTTLS inside TLS and
  refuses a second one (:meth:`ServerNegotiator.answer_in_tls`).
* **Refusal is never silent.**  A client whose STARTTLS is refused (or not
  offered) raises :class:`~.errors.StartTLSRefusedError`, unless it was made
  with ``allow_plaintext=True``: then it reports
  :class:`~.events.TLSRefused` and stops in the PLAINTEXT state.
* **Bounded and strict.**  Lines, messages and buffers have limits
  (``max_line_length``, ``max_buffer_size``); bare CR or LF, NUL bytes,
  malformed BER or XML are typed errors.

Protocols
=========

===========  ============================  ============================  ==================
protocol     client                        server                        specification
===========  ============================  ============================  ==================
SMTP         :class:`SMTPClient`           :class:`SMTPServer`           RFC 3207
LMTP         :class:`LMTPClient`           :class:`LMTPServer`           RFC 2033, 3207
IMAP         :class:`IMAPClient`           :class:`IMAPServer`           RFC 2595, 9051
POP3         :class:`POP3Client`           :class:`POP3Server`           RFC 2595
XMPP         :class:`XMPPClient`           :class:`XMPPServer`           RFC 6120
LDAP         :class:`LDAPClient`           :class:`LDAPServer`           RFC 4511, 4513
PostgreSQL   :class:`PostgreSQLClient`     :class:`PostgreSQLServer`     protocol 3.0
FTP          :class:`FTPClient`            :class:`FTPServer`            RFC 4217
NNTP         :class:`NNTPClient`           :class:`NNTPServer`           RFC 4642
ManageSieve  :class:`ManageSieveClient`    :class:`ManageSieveServer`    RFC 5804
MySQL        :class:`MySQLClient`          --                            protocol 4.1
===========  ============================  ============================  ==================

:data:`PROTOCOLS` maps short names (``"smtp"``, ``"imap"``...) to these
classes, with the usual ports and the ``openssl s_client -starttls`` name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._base import (
    DEFAULT_MAX_BUFFER_SIZE,
    ClientNegotiator,
    Followup,
    Negotiator,
    PipelinePolicy,
    ServerNegotiator,
    Side,
    State,
)
from .errors import (
    InjectionError,
    LimitExceededError,
    PeerClosedError,
    StartTLSError,
    StartTLSNotOfferedError,
    StartTLSProtocolError,
    StartTLSRefusedError,
    StartTLSUsageError,
)
from .events import (
    CapabilitiesReceived,
    CommandReceived,
    ConnectionClosed,
    PlaintextRequested,
    ReadyToUpgrade,
    TLSRefused,
)
from .ftp import FTPClient, FTPServer
from .imap import IMAPClient, IMAPServer
from .ldap import LDAPClient, LDAPServer
from .mysql import MySQLClient
from .nntp import NNTPClient, NNTPServer
from .pop3 import POP3Client, POP3Server
from .postgres import PostgreSQLClient, PostgreSQLServer
from .sieve import ManageSieveClient, ManageSieveServer
from .smtp import LMTPClient, LMTPServer, SMTPClient, SMTPServer
from .xmpp import XMPPClient, XMPPServer

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Negotiator",
    "ClientNegotiator",
    "ServerNegotiator",
    "Followup",
    "State",
    "Side",
    "PipelinePolicy",
    "DEFAULT_MAX_BUFFER_SIZE",
    "SMTPClient",
    "SMTPServer",
    "LMTPClient",
    "LMTPServer",
    "IMAPClient",
    "IMAPServer",
    "POP3Client",
    "POP3Server",
    "XMPPClient",
    "XMPPServer",
    "LDAPClient",
    "LDAPServer",
    "PostgreSQLClient",
    "PostgreSQLServer",
    "FTPClient",
    "FTPServer",
    "NNTPClient",
    "NNTPServer",
    "ManageSieveClient",
    "ManageSieveServer",
    "MySQLClient",
    "ReadyToUpgrade",
    "TLSRefused",
    "CommandReceived",
    "PlaintextRequested",
    "ConnectionClosed",
    "CapabilitiesReceived",
    "StartTLSError",
    "StartTLSRefusedError",
    "StartTLSNotOfferedError",
    "StartTLSProtocolError",
    "InjectionError",
    "LimitExceededError",
    "PeerClosedError",
    "StartTLSUsageError",
]


@dataclass(frozen=True)
class Protocol:
    """What the package knows about one STARTTLS protocol."""

    #: Short name (also the negotiators' ``protocol`` attribute).
    name: str
    #: The client negotiator class.
    client: type[ClientNegotiator]
    #: The server negotiator class, or ``None`` (MySQL).
    server: type[ServerNegotiator] | None
    #: The specification of the STARTTLS step.
    spec: str
    #: Usual plaintext ports.
    ports: tuple[int, ...]
    #: The name ``openssl s_client -starttls`` uses, or ``None``.
    openssl: str | None


#: Every supported protocol by short name.
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("smtp", SMTPClient, SMTPServer, "RFC 3207", (25, 587), "smtp"),
        Protocol("lmtp", LMTPClient, LMTPServer, "RFC 2033, RFC 3207", (24,), "lmtp"),
        Protocol("imap", IMAPClient, IMAPServer, "RFC 2595, RFC 9051", (143,), "imap"),
        Protocol("pop3", POP3Client, POP3Server, "RFC 2595", (110,), "pop3"),
        Protocol("xmpp", XMPPClient, XMPPServer, "RFC 6120", (5222, 5269), "xmpp"),
        Protocol("ldap", LDAPClient, LDAPServer, "RFC 4511, RFC 4513", (389,), "ldap"),
        Protocol(
            "postgres",
            PostgreSQLClient,
            PostgreSQLServer,
            "PostgreSQL protocol 3",
            (5432,),
            "postgres",
        ),
        Protocol("ftp", FTPClient, FTPServer, "RFC 4217", (21,), "ftp"),
        Protocol("nntp", NNTPClient, NNTPServer, "RFC 4642", (119,), "nntp"),
        Protocol("sieve", ManageSieveClient, ManageSieveServer, "RFC 5804", (4190,), "sieve"),
        Protocol("mysql", MySQLClient, None, "MySQL client/server protocol", (3306,), "mysql"),
    )
}
