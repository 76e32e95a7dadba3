"""Sessions and renegotiation.

Clients get their session as an event and resume with it; TLS 1.3 tickets
are processed even by a client that never reads or writes (trio #819).
Renegotiation is refused with an alert, not a hang: a pyOpenSSL peer in the
same process asks for it on demand.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from OpenSSL import SSL

from securepair import PairState, SecurePair, TLSConfig
from securepair.errors import (
    SecurePairError,
    TLSAlertReceivedError,
    TLSError,
    UnsupportedFeatureError,
)
from securepair.events import CleartextAvailable, HandshakeComplete, SessionTicket
from securepair.testing.link import Chunking, Link

from .fixtures_engine import DEFAULT_HOSTNAME, Certs, drain, of_type, transfer


def test_session_ticket_event(make_pair_link: Any, tls_version: str, chunking: Chunking) -> None:
    client, server, link = make_pair_link(chunking=chunking)
    link.handshake()
    events = drain(client)
    tickets = of_type(events, SessionTicket)
    assert len(tickets) == 1
    assert events.index(tickets[0]) > events.index(of_type(events, HandshakeComplete)[0])
    assert tickets[0].session is not None
    assert not of_type(drain(server), SessionTicket), "servers get no tickets"
    # Later traffic does not announce it again.
    assert transfer(link, server, b"more") == b"more"
    assert not of_type(drain(client), SessionTicket)


def test_resumption(
    make_pair_link: Any, make_config: Any, tls_version: str, chunking: Chunking
) -> None:
    client_config = make_config("client")
    server_config = make_config("server")
    client, server, link = make_pair_link(
        client_config=client_config, server_config=server_config, chunking=chunking
    )
    link.handshake()
    assert client.session_reused is False and server.session_reused is False
    (ticket,) = of_type(drain(client), SessionTicket)
    assert transfer(link, client, b"first") == b"first"
    client.close()
    server.close()
    link.pump()

    client, server, link = make_pair_link(
        client_config=client_config,
        server_config=server_config,
        session=ticket.session,
        chunking=chunking,
    )
    link.handshake()
    assert client.session_reused is True
    assert server.session_reused is True
    assert of_type(drain(client), HandshakeComplete)[0].session_reused is True
    assert of_type(drain(server), HandshakeComplete)[0].session_reused is True
    # A resumed session still knows who the server is, and the server the
    # name the client asked for (TLS 1.2 keeps it in the session).
    assert client.authorized is True
    assert client.peer_certificate() is not None
    assert server.server_name == DEFAULT_HOSTNAME
    assert transfer(link, client, b"second") == b"second"
    assert transfer(link, server, b"reply") == b"reply"


def test_session_property_after_handshake(make_pair_link: Any) -> None:
    client, _server, link = make_pair_link()
    link.handshake()
    assert client.session is not None


def test_tls13_tickets_reach_a_client_that_never_reads(make_pair_link: Any) -> None:
    """trio #819: the server's tickets arrive after the handshake; a client
    that only waits must still process them, and the server that waits for
    the client's request must get it."""
    client, server, link = make_pair_link()
    # The client's application never touches pair.cleartext during the
    # handshake; the link only moves bytes.
    link.pump()
    assert client.handshake_complete and server.handshake_complete
    assert client.cleartext.pending == 0
    events = drain(client)
    assert of_type(events, SessionTicket), "tickets were processed on arrival"
    assert not of_type(events, CleartextAvailable)
    # Nothing is stuck anywhere: both sides have sent all they have.
    assert client.encrypted.pending == 0 and server.encrypted.pending == 0
    # The server waits for a request; the client sends it; the reply comes.
    client.cleartext.write(b"GET / HTTP/1.1\r\n\r\n")
    link.pump()
    assert server.cleartext.read() == b"GET / HTTP/1.1\r\n\r\n"
    server.cleartext.write(b"HTTP/1.1 200 OK\r\n\r\n")
    link.pump()
    assert client.cleartext.read() == b"HTTP/1.1 200 OK\r\n\r\n"


def test_tickets_with_data_in_the_same_flight(make_pair_link: Any, chunking: Chunking) -> None:
    """The server writes before the client's Finished arrives: tickets and
    data come together and both are reported."""
    client, server, link = make_pair_link(chunking=chunking)
    server.cleartext.write(b"banner")
    link.pump()
    events = drain(client)
    assert of_type(events, SessionTicket)
    assert client.cleartext.read() == b"banner"


# --------------------------------------------------------------------------
# Renegotiation.


def test_renegotiate_on_stdlib_names_pyopenssl(make_pair_link: Any, certs: Certs) -> None:
    client_config = TLSConfig(backend="stdlib", ca=certs.ca_pem, max_version="TLSv1.2")
    server_config = TLSConfig(
        backend="stdlib", cert=certs.ecdsa.cert, key=certs.ecdsa.key, max_version="TLSv1.2"
    )
    client, server, link = make_pair_link(client_config=client_config, server_config=server_config)
    link.handshake()
    for pair in (client, server):
        with pytest.raises(UnsupportedFeatureError, match="pyopenssl") as caught:
            pair.renegotiate()
        assert "renegotiat" in caught.value.option
        assert pair.state is PairState.OPEN
    assert transfer(link, client, b"still fine") == b"still fine"


class PyOpenSSLPeer:
    """A pyOpenSSL connection over memory BIOs, driven by hand."""

    def __init__(self, ctx: SSL.Context, *, server_side: bool) -> None:
        self.conn = SSL.Connection(ctx, None)
        if server_side:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
            self.conn.set_tlsext_host_name(DEFAULT_HOSTNAME.encode())
        self.error: SSL.Error | None = None

    def step(self) -> None:
        with contextlib.suppress(SSL.WantReadError):
            self.conn.do_handshake()

    def outgoing(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                return out

    def read(self) -> bytes:
        try:
            return self.conn.recv(65536)
        except SSL.WantReadError:
            return b""


def exchange(pair: SecurePair, peer: PyOpenSSLPeer, rounds: int = 20) -> SecurePairError | None:
    """Move bytes both ways, letting the peer continue its handshake, until
    nothing moves.  Bounded: a refusal that hangs fails the test."""
    for _ in range(rounds):
        moved = False
        data = peer.outgoing()
        if data:
            moved = True
            try:
                pair.encrypted.write(data)
            except SecurePairError as exc:
                # Flush what the pair says, as a driver would.
                rest = pair.encrypted.read()
                if rest:
                    peer.conn.bio_write(rest)
                return exc
        data = pair.encrypted.read()
        if data:
            moved = True
            peer.conn.bio_write(data)
        if peer.error is None:
            try:
                peer.step()
                peer.read()
            except SSL.Error as exc:
                peer.error = exc
                moved = True
        if not moved:
            return None
    pytest.fail(f"still exchanging after {rounds} rounds: a renegotiation loop")


def pyopenssl_context(certs: Certs, *, server_side: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server_side else SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if server_side:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from cryptography.x509 import load_pem_x509_certificate

        ctx.use_certificate(load_pem_x509_certificate(certs.ecdsa.cert))
        ctx.use_privatekey(load_pem_private_key(certs.ecdsa.key, None))
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def test_client_renegotiation_is_refused(certs: Certs, backend: str) -> None:
    """A TLS 1.2 client asks to renegotiate: our server refuses with
    no_renegotiation, the client gives up with a fatal alert, and the pair
    reports it as a typed error.  No loop, no hang."""
    config = TLSConfig(
        backend=backend,
        cert=certs.ecdsa.cert,
        key=certs.ecdsa.key,
        min_version="TLSv1.2",
        max_version="TLSv1.2",
    )
    server = SecurePair(config, server_side=True)
    peer = PyOpenSSLPeer(pyopenssl_context(certs, server_side=False), server_side=False)
    peer.step()
    assert exchange(server, peer) is None
    assert server.state is PairState.OPEN
    peer.conn.sendall(b"before")
    assert exchange(server, peer) is None
    assert server.cleartext.read() == b"before"

    assert peer.conn.renegotiate()
    peer.step()
    error = exchange(server, peer)
    assert isinstance(error, TLSError), error
    assert isinstance(error, TLSAlertReceivedError)
    assert error.alert == "handshake_failure"
    assert server.state is PairState.ERROR
    # The client was told no: OpenSSL's reason for its failure.
    assert peer.error is not None
    assert "no renegotiation" in str(peer.error)


def test_server_renegotiation_is_refused(certs: Certs, backend: str) -> None:
    """A TLS 1.2 server sends HelloRequest: our client declines with
    no_renegotiation, which the server takes as fatal.  Our side ends with a
    typed error, and nothing loops."""
    config = TLSConfig(
        backend=backend, ca=certs.ca_pem, min_version="TLSv1.2", max_version="TLSv1.2"
    )
    client = SecurePair(config, server_side=False, server_hostname=DEFAULT_HOSTNAME)
    peer = PyOpenSSLPeer(pyopenssl_context(certs, server_side=True), server_side=True)
    assert exchange(client, peer) is None
    assert client.state is PairState.OPEN
    assert peer.conn.renegotiate()
    peer.step()
    error = exchange(client, peer)
    assert peer.error is not None, "the server gave up on its renegotiation"
    if error is None:
        # The server's fatal alert, once delivered, is a typed error here.
        data = peer.outgoing()
        assert data, "the server sent its alert"
        with pytest.raises(TLSAlertReceivedError) as caught:
            client.encrypted.write(data)
        error = caught.value
    assert isinstance(error, TLSAlertReceivedError)
    assert client.state is PairState.ERROR


def test_renegotiation_refused_in_link(make_pair_link: Any, tls_version: str) -> None:
    """Our own pairs never renegotiate: after a long exchange both are still
    on their first handshake, with exactly one HandshakeComplete each."""
    client, server, link = make_pair_link()
    link.handshake()
    for _ in range(20):
        assert transfer(link, client, b"x" * 1000) == b"x" * 1000
        assert transfer(link, server, b"y" * 1000) == b"y" * 1000
    assert len(of_type(drain(client), HandshakeComplete)) == 1
    assert len(of_type(drain(server), HandshakeComplete)) == 1
    assert isinstance(link, Link)
