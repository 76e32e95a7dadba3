"""Ending a connection: close_notify, ragged EOF, half-close, unwrap().

Clean close and ragged EOF are different outcomes (strict by default); a
record cut by EOF is an error whatever the configuration; close() never
waits; unwrap() hands back exactly the bytes that followed the peer's
close_notify.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securepair import PairState
from securepair.errors import LocalProtocolError, RaggedEOFError
from securepair.events import (
    CleartextAvailable,
    CloseNotifyReceived,
    RaggedEOF,
    Unwrapped,
)
from securepair.testing.link import Chunking, fixed_cuts, whole

from .fixtures_engine import (
    cut_after_close_notify,
    deliver,
    drain,
    examples,
    feed,
    of_type,
    payload,
    transfer,
)


def connected(make_pair_link: Any, **kwargs: Any) -> Any:
    client, server, link = make_pair_link(**kwargs)
    link.handshake()
    drain(client)
    drain(server)
    return client, server, link


# --------------------------------------------------------------------------
# Ragged EOF.


def test_ragged_eof_is_an_error_by_default(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    data = payload(30000)
    server.cleartext.write(data)
    deliver(link, server, reading=False)
    with pytest.raises(RaggedEOFError, match="without close_notify"):
        client.encrypted.write(b"")
    assert client.state is PairState.ERROR
    # What arrived before the EOF is still there to read.
    assert client.cleartext.read() == data
    with pytest.raises(LocalProtocolError) as later:
        client.cleartext.write(b"x")
    assert isinstance(later.value.__cause__, RaggedEOFError)
    with pytest.raises(LocalProtocolError):
        client.encrypted.write(b"more")
    # EOF again is not a second error.
    client.encrypted.write_eof()


def test_ragged_eof_allowed_is_an_event(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = connected(
        make_pair_link, chunking=chunking, client_opts={"allow_ragged_eof": True}
    )
    server.cleartext.write(b"last words")
    deliver(link, server, reading=False)
    client.encrypted.write_eof()
    events = drain(client)
    assert [type(e) for e in events] == [CleartextAvailable, RaggedEOF]
    assert client.state is PairState.CLOSED
    assert client.cleartext.read() == b"last words"
    assert not of_type(events, CloseNotifyReceived)
    with pytest.raises(LocalProtocolError):
        client.cleartext.write(b"x")
    # The server-side config is strict: the same EOF is an error there.
    with pytest.raises(RaggedEOFError):
        server.encrypted.write(b"")


def test_clean_close_then_eof_is_not_ragged(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    server.close()
    link.pump()
    client.encrypted.write(b"")
    assert of_type(drain(client), CloseNotifyReceived)
    assert not of_type(drain(client), RaggedEOF)
    assert client.state is PairState.CLOSED
    client.encrypted.write(b"")  # EOF twice is fine


@pytest.mark.parametrize("allow_ragged_eof", [False, True])
@pytest.mark.parametrize("missing", ["1 byte", "half the body", "the body", "3 header bytes"])
def test_eof_in_the_middle_of_a_record_is_an_error(
    make_pair_link: Any, allow_ragged_eof: bool, missing: str
) -> None:
    """A record cut short by EOF means data was lost: an error even when
    ragged EOFs are accepted."""
    client, server, _link = connected(
        make_pair_link, client_opts={"allow_ragged_eof": allow_ragged_eof}
    )
    server.cleartext.write(payload(1000))
    record = server.encrypted.read()
    body = len(record) - 5
    keep = {
        "1 byte": len(record) - 1,
        "half the body": 5 + body // 2,
        "the body": 5,
        "3 header bytes": 3,
    }[missing]
    feed(client, record[:keep])
    with pytest.raises(RaggedEOFError, match="middle of a TLS record"):
        client.encrypted.write_eof()
    assert client.state is PairState.ERROR
    assert client.cleartext.read() == b""


@examples(dev=50)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=10),
    stop=st.integers(0, 10**6),
)
def test_eof_is_clean_only_between_records(
    make_pair_link: Any, sizes: list[int], cuts: list[int], stop: int
) -> None:
    """With allow_ragged_eof, an EOF between records is a RaggedEOF event
    and one anywhere else is an error, however the bytes were cut."""
    client, server, _link = connected(make_pair_link, client_opts={"allow_ragged_eof": True})
    boundaries = {0}
    wire = b""
    for size in sizes:
        server.cleartext.write(payload(size))
        wire += server.encrypted.read()
        boundaries.add(len(wire))
    stop %= len(wire) + 1
    feed(client, wire[:stop], fixed_cuts(cuts))
    if stop in boundaries:
        client.encrypted.write_eof()
        assert of_type(drain(client), RaggedEOF)
    else:
        with pytest.raises(RaggedEOFError, match="middle of a TLS record"):
            client.encrypted.write_eof()


@pytest.mark.parametrize("allow_ragged_eof", [False, True])
@pytest.mark.parametrize("role", ["client", "server"])
def test_eof_during_handshake_is_an_error(
    make_pair_link: Any, tls_version: str, allow_ragged_eof: bool, role: str
) -> None:
    opts = {"allow_ragged_eof": allow_ragged_eof}
    for cut in (0, 1, 10, None):
        client, server, _link = make_pair_link(client_opts=opts, server_opts=opts)
        if role == "server":
            pair, wire = server, client.encrypted.read()
        else:
            server.encrypted.write(client.encrypted.read())
            pair, wire = client, server.encrypted.read()
        sent = wire[: len(wire) // 2 if cut is None else cut]
        if sent:
            feed(pair, sent)
        with pytest.raises(RaggedEOFError, match="during the TLS handshake") as caught:
            pair.encrypted.write(b"")
        assert f"after sending {len(sent)} bytes" in str(caught.value)
        assert pair.state is PairState.ERROR
        assert pair.bytes_received == len(sent)


# --------------------------------------------------------------------------
# close().


def test_close_does_not_wait(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    assert client.encrypted.pending == 0
    client.close()
    # close_notify is ready at once; nothing has to arrive first.
    assert client.encrypted.pending > 0
    assert client.state is PairState.CLOSING
    assert not drain(client)
    wire, _ = deliver(link, client)
    assert len(wire) < 64
    assert of_type(drain(server), CloseNotifyReceived)
    assert server.state is PairState.PEER_CLOSED
    # The server answering is up to the server.
    assert server.encrypted.pending == 0


def test_half_close(make_pair_link: Any, tls_version: str, chunking: Chunking) -> None:
    """We closed our side: we still read.  The peer closed: it still reads
    what we write.  (TLS 1.3 half-close; OpenSSL allows it for 1.2 too.)"""
    client, server, link = connected(make_pair_link, chunking=chunking)
    client.close()
    link.pump()
    assert client.state is PairState.CLOSING
    assert server.state is PairState.PEER_CLOSED
    reply = payload(50000)
    assert transfer(link, server, reply) == reply
    assert transfer(link, server, b"and more") == b"and more"
    with pytest.raises(LocalProtocolError, match="close"):
        client.cleartext.write(b"too late")
    server.close()
    link.pump()
    assert client.state is server.state is PairState.CLOSED
    assert of_type(drain(client), CloseNotifyReceived)


def test_close_during_handshake_is_sent_after(make_pair_link: Any, chunking: Chunking) -> None:
    for closer in ("client", "server"):
        client, server, link = make_pair_link(chunking=chunking)
        pair = client if closer == "client" else server
        other = server if closer == "client" else client
        pair.cleartext.write(b"written before close")
        pair.close()
        assert pair.state is PairState.HANDSHAKING
        pair.close()  # still idempotent
        link.pump()
        assert pair.handshake_complete and other.handshake_complete
        assert pair.state is PairState.CLOSING
        assert other.state is PairState.PEER_CLOSED
        events = drain(other)
        # The data went first, then the close.
        kinds = [type(e) for e in events]
        assert kinds.index(CleartextAvailable) < kinds.index(CloseNotifyReceived)
        assert other.cleartext.read() == b"written before close"


def test_write_after_close_during_handshake_raises(make_pair_link: Any) -> None:
    client, server, link = make_pair_link()
    client.close()
    with pytest.raises(LocalProtocolError, match="close"):
        client.cleartext.write(b"after close")
    link.pump()
    assert server.cleartext.read() == b""
    assert of_type(drain(server), CloseNotifyReceived)


def test_close_is_idempotent(make_pair_link: Any) -> None:
    client, server, link = connected(make_pair_link)
    client.close()
    first = client.encrypted.pending
    client.close()
    client.cleartext.end()
    assert client.encrypted.pending == first, "one close_notify, not three"
    link.pump()
    server.close()
    server.close()
    link.pump()
    assert client.state is server.state is PairState.CLOSED
    client.close()
    assert client.encrypted.pending == 0


def test_write_after_close_raises(make_pair_link: Any, tls_version: str) -> None:
    client, server, link = connected(make_pair_link)
    client.close()
    with pytest.raises(LocalProtocolError, match="close"):
        client.cleartext.write(b"x")
    link.pump()
    server.close()
    link.pump()
    with pytest.raises(LocalProtocolError, match="closed"):
        client.cleartext.write(b"x")
    with pytest.raises(LocalProtocolError, match="closed"):
        server.cleartext.write(b"x")


def test_eof_after_our_close(make_pair_link: Any) -> None:
    """We sent close_notify; the peer hangs up without answering.  Strict
    by default, as any other missing close_notify."""
    client, _server, link = connected(make_pair_link)
    client.close()
    link.pump()
    with pytest.raises(RaggedEOFError):
        client.encrypted.write(b"")
    client2, _server2, link2 = connected(make_pair_link, client_opts={"allow_ragged_eof": True})
    client2.close()
    link2.pump()
    client2.encrypted.write(b"")
    assert of_type(drain(client2), RaggedEOF)
    assert client2.state is PairState.CLOSED


# --------------------------------------------------------------------------
# unwrap().


@pytest.mark.parametrize("trailing", [b"", b"220 plaintext again\r\n", bytes(range(256)) * 10])
def test_unwrap_we_first(
    make_pair_link: Any, chunking: Chunking, tls_version: str, trailing: bytes
) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    assert client.unwrap() is None
    assert client.state is PairState.CLOSING
    assert not of_type(drain(client), Unwrapped)
    link.pump()
    assert of_type(drain(server), CloseNotifyReceived)
    assert server.unwrap() == b""
    assert server.state is PairState.UNWRAPPED
    assert of_type(drain(server), Unwrapped) == [Unwrapped(trailing_data=b"")]
    # The server's close_notify, then its first plaintext bytes.
    wire = server.encrypted.read() + trailing
    _, rest = cut_after_close_notify(client, wire, chunking)
    assert client.state is PairState.UNWRAPPED
    (event,) = of_type(drain(client), Unwrapped)
    assert event.trailing_data == client.trailing_data
    assert client.trailing_data + rest == trailing
    assert client.bytes_received == len(link.server_to_client) + len(wire) - len(rest)
    with pytest.raises(LocalProtocolError, match="unwrapped"):
        client.encrypted.write(b"plaintext")
    with pytest.raises(LocalProtocolError, match="unwrapped"):
        client.cleartext.write(b"plaintext")
    with pytest.raises(LocalProtocolError, match="unwrapped"):
        client.unwrap()


@pytest.mark.parametrize("trailing", [b"", b"EHLO again\r\n"])
def test_unwrap_peer_first(make_pair_link: Any, chunking: Chunking, trailing: bytes) -> None:
    client, server, link = connected(make_pair_link, chunking=chunking)
    server.cleartext.write(b"last secret")
    server.close()
    feed(client, server.encrypted.read() + trailing, chunking)
    assert client.state is PairState.PEER_CLOSED
    assert client.trailing_data == trailing
    assert client.cleartext.read() == b"last secret"
    assert client.unwrap() == trailing
    assert client.state is PairState.UNWRAPPED
    assert of_type(drain(client), Unwrapped) == [Unwrapped(trailing_data=trailing)]
    # Our close_notify went out; the server sees a clean close.
    link.pump()
    assert server.state is PairState.CLOSED
    with pytest.raises(LocalProtocolError):
        client.encrypted.write(b"x")


def test_unwrap_collects_trailing_data_across_writes(make_pair_link: Any) -> None:
    client, server, _link = connected(make_pair_link)
    server.close()
    feed(client, server.encrypted.read() + b"A")
    feed(client, b"BC")
    feed(client, memoryview(b"DEF"))
    assert client.unwrap() == b"ABCDEF"


@examples(dev=40)
@given(
    trailing=st.binary(max_size=600),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=10),
    we_first=st.booleans(),
)
def test_unwrap_any_cuts(
    make_pair_link: Any, trailing: bytes, cuts: list[int], we_first: bool
) -> None:
    chunking = fixed_cuts(cuts)
    client, server, link = connected(make_pair_link, chunking=chunking)
    assert transfer(link, server, b"secret") == b"secret"
    if we_first:
        assert client.unwrap() is None
        link.pump()
        assert server.unwrap() == b""
    else:
        server.unwrap()
    _, rest = cut_after_close_notify(client, server.encrypted.read() + trailing, chunking)
    if client.state is PairState.PEER_CLOSED:
        assert client.unwrap() == trailing
    else:
        assert client.state is PairState.UNWRAPPED
        assert client.trailing_data + rest == trailing
    link.pump()
    assert server.state is PairState.UNWRAPPED or server.state is PairState.CLOSED


def test_unwrap_during_handshake_is_refused(make_pair_link: Any) -> None:
    client, _server, link = make_pair_link()
    with pytest.raises(LocalProtocolError, match="handshaking"):
        client.unwrap()
    link.handshake()


def test_close_after_unwrap_does_nothing(make_pair_link: Any) -> None:
    client, server, link = connected(make_pair_link, chunking=whole)
    server.unwrap()
    link.pump()
    client.unwrap()
    pending = client.encrypted.pending
    client.close()
    assert client.encrypted.pending == pending


@pytest.mark.parametrize("reader", ["read", "readinto"])
def test_ragged_eof_behind_unread_data(make_pair_link: Any, reader: str) -> None:
    """The application is behind when the transport ends: every byte that
    arrived is still read, in order, and then the error comes, once."""
    from securepair.config import MIN_BUFFER_LIMIT

    client, server, _link = connected(
        make_pair_link, client_opts={"buffer_limit": MIN_BUFFER_LIMIT}
    )
    data = payload(5 * 16384)
    server.cleartext.write(data)
    assert feed(client, server.encrypted.read()) > 0
    client.encrypted.write_eof()  # noticed only when the reader catches up
    received = bytearray()
    buffer = bytearray(10000)
    with pytest.raises(RaggedEOFError, match="without close_notify"):
        for _ in range(100):
            if reader == "read":
                received += client.cleartext.read(10000)
            else:
                received += buffer[: client.cleartext.readinto(buffer)]
    assert received == data
    assert client.state is PairState.ERROR
    # Raised once; after it, reading finds nothing and says so quietly.
    assert client.cleartext.read() == b""
    assert client.cleartext.readinto(buffer) == 0


@pytest.mark.parametrize("how", ["close", "unwrap"])
def test_close_while_the_application_is_behind(make_pair_link: Any, how: str) -> None:
    """Closing while the cleartext buffer is full (OpenSSL holding the rest
    of a record the pair could only partly take): close_notify goes out and
    every byte that arrived is still read."""
    from securepair.config import MIN_BUFFER_LIMIT

    client, server, link = connected(make_pair_link, client_opts={"buffer_limit": MIN_BUFFER_LIMIT})
    data = payload(3 * 16384)
    server.cleartext.write(data)
    feed(client, server.encrypted.read())
    assert client.cleartext.pending == MIN_BUFFER_LIMIT
    if how == "close":
        client.close()
    else:
        assert client.unwrap() is None
    assert client.state is PairState.CLOSING
    received = bytearray()
    while chunk := client.cleartext.read():
        received += chunk
    assert received == data
    link.pump()
    assert server.state is PairState.PEER_CLOSED
    if how == "close":
        server.close()
    else:
        assert server.unwrap() == b""
    link.pump()
    expected = PairState.CLOSED if how == "close" else PairState.UNWRAPPED
    assert client.state is expected
