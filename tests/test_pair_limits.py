"""Bounded memory: every buffer has a limit and going over it is a typed
signal, backpressure first (fewer bytes taken), then BufferFullError.
Nothing is lost on the way: once the application catches up, every byte
arrives, in order."""

from __future__ import annotations

from typing import Any

import pytest

from securepair import PairState
from securepair.config import MIN_BUFFER_LIMIT
from securepair.errors import BufferFullError, LocalProtocolError
from securepair.events import CleartextAvailable

from .fixtures_engine import drain, feed, of_type, payload

LIMIT = MIN_BUFFER_LIMIT
SMALL = {"buffer_limit": LIMIT}


def connected(make_pair_link: Any) -> Any:
    client, server, link = make_pair_link(client_opts=SMALL, server_opts=SMALL)
    link.handshake()
    drain(client)
    drain(server)
    return client, server, link


def test_reader_that_never_reads(make_pair_link: Any, tls_version: str) -> None:
    """The client's application stops reading: encrypted.write() takes
    fewer bytes, then raises BufferFullError; the pair holds at most its
    limits.  After reading, the rest goes in and nothing is lost."""
    client, server, link = connected(make_pair_link)
    sent = payload(10 * LIMIT)
    wire = bytearray()
    view = memoryview(sent)
    while view:
        taken = server.cleartext.write(view[:16384])
        view = view[taken:]
        wire += server.encrypted.read()

    offered = memoryview(bytes(wire))
    takes = []
    with pytest.raises(BufferFullError) as caught:
        for _ in range(10_000):
            taken = client.encrypted.write(offered[:8192])
            assert 0 < taken <= 8192
            takes.append(taken)
            offered = offered[taken:]
    full = caught.value
    assert full.buffer == "encrypted"
    assert full.limit == LIMIT
    assert "read pair.cleartext" in str(full)
    assert any(t < 8192 for t in takes), "a short write came before the error"
    assert client.cleartext.pending <= LIMIT
    # Bounded: the cleartext buffer and the input buffer, each at its limit.
    assert client.bytes_received - len(link.server_to_client) <= 2 * LIMIT + 2 * 16384
    assert client.state is PairState.OPEN, "backpressure is not an error"

    received = bytearray()
    while offered or client.cleartext.pending:
        received += client.cleartext.read()
        if offered:
            taken = client.encrypted.write(offered[:8192])
            offered = offered[taken:]
    received += client.cleartext.read()
    assert received == sent


def test_cleartext_write_backpressure(make_pair_link: Any) -> None:
    """The driver stops sending: cleartext.write() takes fewer bytes, then
    raises BufferFullError.  Once the output is drained, writing resumes."""
    client, server, link = connected(make_pair_link)
    accepted = bytearray()
    data = payload(4 * LIMIT)
    view = memoryview(data)
    with pytest.raises(BufferFullError) as caught:
        while view:
            taken = client.cleartext.write(view[:10000])
            assert taken > 0
            accepted += view[:taken]
            view = view[taken:]
    assert caught.value.buffer == "encrypted"
    assert "read pair.encrypted" in str(caught.value)
    # At most one write's worth of ciphertext over the limit.
    assert LIMIT <= client.encrypted.pending <= LIMIT + 10000 + 1024
    assert len(accepted) < len(data)
    received = bytearray()
    while view or client.encrypted.pending:
        link.pump()
        received += server.cleartext.read()
        if view:
            taken = client.cleartext.write(view[:10000])
            accepted += view[:taken]
            view = view[taken:]
    link.pump()
    received += server.cleartext.read()
    assert accepted == data
    assert received == data


def test_queued_before_handshake_is_bounded(make_pair_link: Any) -> None:
    client, server, link = make_pair_link(client_opts=SMALL, server_opts=SMALL)
    data = payload(2 * LIMIT)
    first = client.cleartext.write(data)
    assert first == LIMIT
    with pytest.raises(BufferFullError) as caught:
        client.cleartext.write(data[first:])
    assert caught.value.buffer == "cleartext"
    assert "before the handshake" in str(caught.value)
    link.pump()
    received = server.cleartext.read()
    assert received == data[:first]


def test_cleartext_available_is_coalesced(make_pair_link: Any, tls_version: str) -> None:
    """A thousand small records and an application that looks at events
    only at the end: one CleartextAvailable, not a thousand."""
    client, server, link = connected(make_pair_link)
    for i in range(1000):
        server.cleartext.write(b"%09d\n" % i)
        link.pump()
    events = drain(client)
    assert of_type(events, CleartextAvailable) == [CleartextAvailable(nbytes=10_000)]
    assert len(events) <= 2  # and perhaps a late TLS 1.3 session ticket
    assert client.cleartext.read() == b"".join(b"%09d\n" % i for i in range(1000))


def test_events_announce_only_unread_data(make_pair_link: Any) -> None:
    client, server, link = connected(make_pair_link)
    server.cleartext.write(b"abc")
    link.pump()
    assert client.cleartext.read() == b"abc"
    assert not of_type(drain(client), CleartextAvailable), "already read: nothing to announce"


def test_trailing_data_is_bounded(make_pair_link: Any) -> None:
    """After the peer's close_notify, bytes are kept as trailing data, up to
    the limit."""
    client, server, _link = connected(make_pair_link)
    server.close()
    feed(client, server.encrypted.read())
    assert client.state is PairState.PEER_CLOSED
    junk = b"z" * (LIMIT + 100)
    assert client.encrypted.write(junk) == LIMIT
    with pytest.raises(BufferFullError) as caught:
        client.encrypted.write(b"more")
    assert caught.value.buffer == "encrypted"
    assert client.trailing_data == junk[:LIMIT]
    assert client.unwrap() == junk[:LIMIT]


def test_write_after_buffer_full_is_not_an_error_state(make_pair_link: Any) -> None:
    """BufferFullError is backpressure: the pair stays usable."""
    client, _server, _link = connected(make_pair_link)
    with pytest.raises(BufferFullError):
        while True:
            client.cleartext.write(b"x" * 16384)
    assert client.state is PairState.OPEN
    client.encrypted.read()
    assert client.cleartext.write(b"y") == 1
    with pytest.raises(LocalProtocolError):
        client.close()
        client.cleartext.write(b"z")


@pytest.mark.parametrize("reader", ["read", "readinto"])
def test_record_split_at_the_limit_is_not_stranded(make_pair_link: Any, reader: str) -> None:
    """Near the limit a read takes only part of a record and OpenSSL keeps
    the rest, decrypted, while the input buffer is empty.  Reading must
    bring it out with no further input: nothing else will arrive to wake
    it (the peer is waiting for an answer)."""
    client, server, link = make_pair_link(client_opts=SMALL)
    link.handshake()
    data = payload(3 * 16384)
    assert server.cleartext.write(data) == len(data)
    link.pump()
    assert client.cleartext.pending <= LIMIT
    received = bytearray()
    buffer = bytearray(LIMIT)
    for _ in range(10):
        if reader == "read":
            chunk = client.cleartext.read()
        else:
            chunk = bytes(buffer[: client.cleartext.readinto(buffer)])
        if not chunk:
            break
        received += chunk
    assert received == data
    assert server.encrypted.pending == 0, "no further input was needed"
