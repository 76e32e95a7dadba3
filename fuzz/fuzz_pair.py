# Invariant: whatever bytes arrive on the encrypted side of a SecurePair --
# instead of the peer's handshake, after a real handshake prefix (records of
# a connection captured at startup), or after a live handshake with data or
# close_notify -- fed whole, byte by byte or in pieces, with or without EOF,
# on the client or the server, on the stdlib or the pyOpenSSL backend, with
# TLS 1.2 or 1.3, every call makes progress or raises a typed SecurePairError:
# a RemoteProtocolError or TLSError, after which the pair is in ERROR with
# the alert (if one was sent) already on the encrypted side, or a
# LocalProtocolError for a call the state does not allow.  Never another
# exception, never a hang.  Bytes are accounted for: bytes_received is the
# sum of what each write took, trailing_data is the tail of that stream, and
# bytes_received == consumed by TLS + trailing + waiting in the input buffer
# (nothing waits once the pair failed or the peer closed).  No cleartext
# appears that the real peer did not write, and no handshake completes
# without a real peer.
"""Fuzzer of the ``SecurePair`` receive path, both roles, both backends.

Run with ``fuzz/run pair``, or by hand:
``python fuzz/fuzz_pair.py fuzz/corpus/pair -max_total_time=60``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterable
from typing import Any

import atheris
import harness_support as hs

hs.use_instrumented_cframer()

with atheris.instrument_imports(include=["securepair"]):
    from securepair import PairState, SecurePair
    from securepair.errors import (
        LocalProtocolError,
        NotTLSError,
        RemoteProtocolError,
        SecurePairError,
        TLSError,
    )
    from securepair.events import AlertSent, Event
    from securepair.pair import ALLOWED
    from securepair.records import NeedData
    from securepair.records import python as py_framer
    from securepair.testing.link import Link

#: Option ranges, in the order test_one_input consumes them.
OPTIONS = (
    ("backend", 0, len(hs.BACKENDS) - 1),
    ("version", 0, len(hs.VERSIONS) - 1),
    ("side", 0, 1),  # 0: fuzz the server (bytes from "the client"); 1: the client
    ("live", 0, 1),  # 0: captured prefix (maybe empty); 1: after a live handshake
    ("prefix", 0, 15),  # records of the captured peer stream fed first
    ("actions", 0, 15),  # live: bit 0 peer data, 1 peer close, 2 our close, 3 unwrap
    ("chunking", 0, 2),  # whole, byte by byte, random pieces
    ("seed", 0, 255),
    ("eof", 0, 2),  # then: nothing, write(b""), write_eof()
    ("read", 0, 1),  # read cleartext after every write
    ("initial", 0, 1),  # no prefix: the first piece goes in as initial_data
)

#: What the live peer writes before the fuzzed bytes.
PEER_DATA = b"real data from the real peer\n"


def encode_input(payload: bytes, **options: int) -> bytes:
    """The input that makes :func:`test_one_input` run ``payload`` with
    these options (the rest 0), for seeds."""
    for name in options:
        if name not in {n for n, *_ in OPTIONS}:
            raise TypeError(f"unknown option {name!r}")
    return payload + hs.encode_int_options(
        [(lo, hi, options.get(name, lo)) for name, lo, hi in OPTIONS]
    )


# --------------------------------------------------------------------------
# Captured at startup: configs and one real connection per backend/version.


class Setup:
    def __init__(self) -> None:
        ids = hs.Identities()
        self.configs: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.streams: dict[tuple[str, str], tuple[list[bytes], list[bytes]]] = {}
        for backend in hs.BACKENDS:
            for version in hs.VERSIONS:
                key = (backend, version)
                self.configs[key] = hs.configs(ids, backend, version)
                # The same configs as the fuzzed pairs: a resumption offer
                # in the capture would be accepted, which goes deeper.
                plain = hs.capture(ids, backend, version)[0]
                self.streams[key] = (
                    hs.split_records(plain.client_to_server),
                    hs.split_records(plain.server_to_client),
                )


@functools.cache
def setup() -> Setup:
    """The one Setup of this process, made on first use."""
    return Setup()


def with_session_id(server_hello: bytes, client_hello: bytes) -> bytes:
    """The captured ServerHello record with its legacy_session_id_echo set to
    the new client's session id, so the client accepts it (TLS 1.3)."""
    hello = py_framer.parse_client_hello(client_hello)
    if isinstance(hello, NeedData):
        return server_hello
    sid = hello.session_id
    # header (5), handshake type and length (4), version (2), random (32)
    at = 5 + 4 + 2 + 32
    if len(server_hello) <= at or server_hello[5] != 2 or server_hello[at] != len(sid):
        return server_hello
    return server_hello[: at + 1] + sid + server_hello[at + 1 + len(sid) :]


# --------------------------------------------------------------------------
# The driver and its checks.


class Driver:
    """Feeds one pair and checks the invariant after every call."""

    def __init__(self, pair: SecurePair, peer_written: bytes, live: bool) -> None:
        self.pair = pair
        self.accepted = bytearray()
        self.received = bytearray()
        self.peer_written = peer_written
        self.live = live
        self.failed: SecurePairError | None = None
        self.sent = bytearray()

    def drain(self) -> list[Event]:
        events = []
        for event in self.pair.events():
            assert isinstance(event, Event), event
            events.append(event)
        self.sent += self.pair.encrypted.read()
        return events

    def read(self) -> None:
        self.received += self.pair.cleartext.read()

    def write(self, data: bytes, read: bool) -> None:
        pair = self.pair
        view = memoryview(data)
        while view:
            state = pair.state
            before = pair.bytes_received
            pending_out = pair.encrypted.pending
            try:
                taken = pair.encrypted.write(view)
            except SecurePairError as error:
                self.on_error(error, state, pending_out)
                delta = pair.bytes_received - before
                assert 0 <= delta <= len(view), (delta, len(view))
                self.accepted += view[:delta]
                self.check()
                return
            delta = pair.bytes_received - before
            # Progress: some bytes taken, all counted, none invented.
            assert 0 < taken <= len(view), (taken, len(view))
            assert taken == delta, (taken, delta)
            self.accepted += view[:taken]
            view = view[taken:]
            if read:
                self.read()
            self.drain()
            self.check()

    def eof(self, how: int) -> None:
        state = self.pair.state
        pending_out = self.pair.encrypted.pending
        try:
            if how == 1:
                assert self.pair.encrypted.write(b"") == 0
            else:
                self.pair.encrypted.write_eof()
        except SecurePairError as error:
            self.on_error(error, state, pending_out)
        self.read()
        self.drain()
        self.check()

    def on_error(self, error: SecurePairError, state: PairState, pending_out: int) -> None:
        pair = self.pair
        if isinstance(error, RemoteProtocolError | TLSError):
            # Documented: the peer or TLS failed the connection.  Raised
            # once; from then on the pair is in ERROR.
            assert self.failed is None, (self.failed, error)
            assert "feed" in ALLOWED[state], (state, error)
            assert pair.state is PairState.ERROR, (pair.state, error)
            self.failed = error
            if isinstance(error, TLSError) and error.alert_sent:
                # Alerts go out before errors come up.
                assert pair.encrypted.pending > pending_out, error
                events = self.drain()
                assert any(isinstance(e, AlertSent) for e in events), (error, events)
        elif isinstance(error, LocalProtocolError):
            # Documented: a call the state does not allow (after a failure,
            # after unwrap) -- never raised where feeding is allowed.
            assert "feed" not in ALLOWED[state], (state, error)
            if state is PairState.ERROR:
                assert error.__cause__ is self.failed, (error, self.failed)
        else:
            raise AssertionError(f"untyped SecurePairError {error!r}")

    def check(self) -> None:
        pair = self.pair
        received = pair.bytes_received
        assert received == len(self.accepted), (received, len(self.accepted))
        trailing = pair.trailing_data
        assert self.accepted.endswith(trailing), (trailing[:40], bytes(self.accepted[-40:]))
        waiting = pair._in.pending
        consumed = received - len(trailing) - waiting
        assert consumed >= 0, (received, len(trailing), waiting)
        if pair._error is not None or pair._recv_close:
            assert waiting == 0, (pair.state, waiting)
        if isinstance(self.failed, NotTLSError):
            # None of it was TLS: every byte is handed back.
            assert trailing == self.accepted, (trailing[:40], bytes(self.accepted[:40]))
        # No cleartext but the real peer's, in its order.
        assert self.peer_written.startswith(self.received), (bytes(self.received[:40]),)
        if not self.live:
            assert not pair.handshake_complete, "handshake completed without a peer"


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    opt = {name: fdp.ConsumeIntInRange(lo, hi) for name, lo, hi in OPTIONS}
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    s = setup()
    key = (hs.BACKENDS[opt["backend"]], hs.VERSIONS[opt["version"]])
    client_config, server_config = s.configs[key]
    fuzz_server = opt["side"] == 0
    pieces = list(hs.chunks(payload, opt["chunking"], opt["seed"]))
    initial = b""
    if opt["initial"] and not opt["live"] and not opt["prefix"] and pieces:
        initial = pieces.pop(0)
    try:
        server = SecurePair(
            server_config, server_side=True, initial_data=initial if fuzz_server else b""
        )
        client = SecurePair(
            client_config, server_side=False, initial_data=b"" if fuzz_server else initial
        )
    except SecurePairError as error:
        # Documented: initial_data is treated exactly like a first write,
        # so it fails the way a write does, typed.
        assert isinstance(error, RemoteProtocolError | TLSError), error
        return
    target = server if fuzz_server else client
    peer_written = b""

    if opt["live"]:
        link = Link(client, server)
        link.handshake()
        peer = client if fuzz_server else server
        peer.cleartext.write(PEER_DATA)
        if opt["actions"] & 1:
            peer_written = PEER_DATA
        if opt["actions"] & 2:
            peer.close()
        wire = peer.encrypted.read()
        if not opt["actions"] & 1:
            # The data stays unsent, the close_notify goes.
            wire = b"".join(r for r in hs.split_records(wire) if len(r) < 40)
        driver = Driver(target, peer_written, live=True)
        # What the handshake already fed it counts too.
        driver.accepted += link.client_to_server if fuzz_server else link.server_to_client
        driver.drain()
        driver.write(wire, read=True)
        if opt["actions"] & 4 and "close" in ALLOWED[target.state]:
            target.close()
        if opt["actions"] & 8 and "unwrap" in ALLOWED[target.state]:
            target.unwrap()
        driver.drain()
        driver.check()
    else:
        c2s, s2c = s.streams[key]
        hello = client.encrypted.read()
        if fuzz_server:
            prefix = c2s[: opt["prefix"]]
        else:
            prefix = s2c[: opt["prefix"]]
            if prefix and key[1] == "TLSv1.3":
                prefix = [with_session_id(prefix[0], hello), *prefix[1:]]
        driver = Driver(target, b"", live=False)
        driver.accepted += initial
        driver.drain()
        driver.check()
        driver.write(b"".join(prefix), read=True)

    read = bool(opt["read"])
    for piece in pieces:
        driver.write(piece, read)
    if opt["eof"]:
        driver.eof(opt["eof"])
    driver.read()
    driver.check()
    # close() is allowed in every state; it fails only as TLS fails.
    # Documented: sending close_notify can fail in TLS, typed.
    with contextlib.suppress(TLSError):
        target.close()
    driver.drain()
    driver.check()


# --------------------------------------------------------------------------
# Seeds: real continuations of the captured prefixes.


def seed_inputs(transcripts: Iterable[hs.Transcript]) -> Iterable[bytes]:
    """Seeds from connections captured at build time: each peer stream
    whole (instead of a handshake), its rest after 1-3 records (after a
    prefix), and records after a live handshake."""
    seen: set[tuple[int, int]] = set()
    for t in transcripts:
        if t.name not in ("plain", "plain-resumed", "client_cert"):
            continue
        b = hs.BACKENDS.index(t.backend)
        v = hs.VERSIONS.index(t.version)
        for side, stream in ((0, t.client_to_server), (1, t.server_to_client)):
            records = hs.split_records(stream)
            for k in range(4):
                rest = b"".join(records[k:])[:4000]
                n = k + 1
                yield encode_input(
                    rest, backend=b, version=v, side=side, prefix=k, chunking=n % 3, seed=n
                )
            if (b, v) in seen and side == 1:
                continue
            seen.add((b, v))
            # After a live handshake: records of the right kinds, wrong keys.
            tail = b"".join(records[-3:])
            for actions in (0, 1, 3, 5, 8):
                yield encode_input(
                    tail, backend=b, version=v, side=side, live=1, actions=actions, eof=1, read=1
                )


def main() -> None:
    setup()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
