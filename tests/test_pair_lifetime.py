"""A finished pair is freed by reference counting, not left to the cycle
collector: a busy server runs full collections rarely, and until then a
pair in a cycle keeps its OpenSSL state (and buffers) alive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from securepair import SecurePair, TLSConfig, certgen
from securepair.errors import SecurePairError
from securepair.testing.link import Link

CA = certgen.CertificateAuthority("lifetime test CA")
LEAF = CA.issue(["localhost"])


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _connected(backend: str) -> tuple[SecurePair, SecurePair, Link]:
    """A client and a server pair with their handshake done."""
    server = SecurePair(
        TLSConfig(cert=LEAF.cert_pem, key=LEAF.key_pem, backend=backend), server_side=True
    )
    client = SecurePair(
        TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname="localhost"
    )
    link = Link(client, server)
    link.handshake()
    return client, server, link


def test_pairs_and_their_connections_die_with_the_last_reference(
    backend: str, no_collector: None
) -> None:
    client, server, link = _connected(backend)
    client.cleartext.write(b"hello")
    link.pump()
    assert server.cleartext.read() == b"hello"
    # A clean end both ways: both pairs are CLOSED.
    client.close()
    link.pump()
    server.close()
    link.pump()
    assert client.state.value == server.state.value == "closed"
    refs = [weakref.ref(o) for o in (client, server, client._conn, server._conn)]
    sides = [weakref.ref(client.encrypted), weakref.ref(server.cleartext)]
    del client, server, link
    assert [r() for r in refs + sides] == [None] * 6


def test_a_failed_pair_dies_with_its_last_reference(backend: str, no_collector: None) -> None:
    server = SecurePair(
        TLSConfig(cert=LEAF.cert_pem, key=LEAF.key_pem, backend=backend), server_side=True
    )
    with pytest.raises(SecurePairError):
        server.encrypted.write(b"GET / HTTP/1.1\r\n\r\n")
    assert server.state.value == "error"
    refs = [weakref.ref(server), weakref.ref(server._conn), weakref.ref(server.cleartext)]
    del server
    assert [r() for r in refs] == [None] * 3


def test_sides_keep_what_the_application_set_on_them(backend: str) -> None:
    client = SecurePair(
        TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname="localhost"
    )
    client.cleartext.note = "kept"  # type: ignore[attr-defined]
    assert client.cleartext.note == "kept"  # type: ignore[attr-defined]
    assert not hasattr(client.encrypted, "note")
    del client.cleartext.note  # type: ignore[attr-defined]
    assert not hasattr(client.cleartext, "note")
    assert client.encrypted is client.encrypted


def test_a_live_pair_dropped_by_its_application_dies_with_its_last_reference(
    backend: str, no_collector: None
) -> None:
    # No close, no EOF: a server that forgets a connection mid-stream.
    client, server, link = _connected(backend)
    client.cleartext.write(b"hello")
    client.cleartext.note = "a side attribute"  # type: ignore[attr-defined]
    link.pump()
    assert client.state.value == server.state.value == "open"
    refs = [weakref.ref(o) for o in (client, server, client._conn, server._conn)]
    sides = [weakref.ref(client.encrypted), weakref.ref(server.cleartext)]
    del client, server, link
    assert [r() for r in refs + sides] == [None] * 6


def test_a_side_keeps_its_pair(backend: str) -> None:
    client = SecurePair(
        TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname="localhost"
    )
    encrypted = client.encrypted
    assert client.encrypted is encrypted  # one side object while it is in use
    pair = weakref.ref(client)
    del client
    assert pair() is not None
    assert encrypted.read().startswith(b"\x16\x03")  # the ClientHello, still there


def test_a_side_attribute_naming_the_pair_makes_no_cycle_once_ended(
    backend: str, no_collector: None
) -> None:
    class Handler:
        pair: SecurePair

    client, server, link = _connected(backend)
    handler = Handler()
    handler.pair = client
    client.cleartext.handler = handler  # type: ignore[attr-defined]
    assert client.cleartext.handler is handler  # type: ignore[attr-defined]
    client.close()
    link.pump()
    server.close()
    link.pump()
    assert client.state.value == "closed"
    ref = weakref.ref(client)
    del client, server, link, handler
    assert ref() is None
