"""A hypothesis state machine drives a client and a server pair through any
interleaving of writes (both sides), reads, partial deliveries cut at random
places, closes on either side, event draining and, at most once, the death
of the network connection.

Checked after every step: what one side's application read is a prefix of
what the other side's application wrote; every state is legal and follows
from the previous one (ERROR only after the connection died without a
close_notify); events come in a legal order; buffers stay bounded.  At the
end everything is flushed and, unless the connection died before a side
had the peer's close_notify, what each side read is exactly what the other
wrote.  Small buffer limits make backpressure part of the game.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from securepair import PairState, SecurePair
from securepair.config import MIN_BUFFER_LIMIT
from securepair.errors import (
    BufferFullError,
    HandshakeNotCompleteError,
    LocalProtocolError,
    RaggedEOFError,
)
from securepair.events import (
    AlertSent,
    CleartextAvailable,
    CloseNotifyReceived,
    HandshakeComplete,
    SessionTicket,
)
from securepair.pair import ALLOWED
from securepair.testing.link import fixed_cuts

from .fixtures_engine import examples, payload

S = PairState
LIMIT = MIN_BUFFER_LIMIT
SIDES = st.sampled_from(["client", "server"])
#: Piece sizes for deliveries: tiny ones cut headers, big ones move bulk.
CUTS = st.lists(st.one_of(st.integers(1, 8), st.integers(9, 4000)), min_size=1, max_size=4)

#: State -> the states it may move to (or stay in) in a run with no faults.
LEGAL = {
    S.HANDSHAKING: {S.HANDSHAKING, S.OPEN, S.CLOSING, S.PEER_CLOSED, S.CLOSED},
    S.OPEN: {S.OPEN, S.CLOSING, S.PEER_CLOSED, S.CLOSED},
    S.CLOSING: {S.CLOSING, S.CLOSED},
    S.PEER_CLOSED: {S.PEER_CLOSED, S.CLOSED},
    S.CLOSED: {S.CLOSED},
    S.ERROR: {S.ERROR},
}


class PairMachine(RuleBasedStateMachine):
    make_pair_link: ClassVar[Any]

    def __init__(self) -> None:
        super().__init__()
        options = {"buffer_limit": LIMIT}
        client, server, _ = type(self).make_pair_link(client_opts=options, server_opts=options)
        self.pairs: dict[str, SecurePair] = {"client": client, "server": server}
        self.peer = {"client": "server", "server": "client"}
        self.sent = {"client": bytearray(), "server": bytearray()}
        self.received = {"client": bytearray(), "server": bytearray()}
        # Read from a side's pair.encrypted, not yet taken by the other pair.
        self.wire = {"client": bytearray(), "server": bytearray()}
        self.closed = {"client": False, "server": False}
        # The connection was cut (both ways) ...
        self.cut = False
        # ... after this side had processed the peer's close_notify.
        self.clean_end = {"client": False, "server": False}
        self.states = {"client": S.HANDSHAKING, "server": S.HANDSHAKING}
        self.events: dict[str, list[type]] = {"client": [], "server": []}

    # -- rules --------------------------------------------------------------

    @initialize(connect=st.booleans())
    def start(self, connect: bool) -> None:
        """Half the runs start connected, so that most steps happen with
        data flowing rather than with a handshake in pieces."""
        if connect:
            self.flush()
            assert all(p.state is S.OPEN for p in self.pairs.values())

    @rule()
    def flush(self) -> None:
        """Deliver everything both ways, reading as it comes."""
        for _ in range(1000):
            moved = 0
            for side in self.pairs:
                self.read(side, -1)
                moved += self.move(side, 1 << 30, [1 << 16])
            if not moved and not any(p.cleartext.pending for p in self.pairs.values()):
                return
        raise AssertionError("flushing did not settle")

    @rule(
        side=SIDES,
        size=st.one_of(st.integers(1, 100), st.integers(101, 40000)),
        seed=st.integers(0, 255),
    )
    def write(self, side: str, size: int, seed: int) -> None:
        pair = self.pairs[side]
        data = payload(size, seed)
        if self.closed[side] or "write" not in ALLOWED[pair.state]:
            try:
                pair.cleartext.write(data)
            except LocalProtocolError as exc:
                assert not isinstance(exc, BufferFullError)
                return
            raise AssertionError("write after close() was accepted")
        try:
            taken = pair.cleartext.write(data)
        except BufferFullError:
            return
        assert 0 < taken <= size
        self.sent[side] += data[:taken]

    @rule(side=SIDES, seed=st.integers(0, 255))
    def flood(self, side: str, seed: int) -> None:
        """Write until the pair pushes back (or refuses: closed)."""
        pair = self.pairs[side]
        for _ in range(2 * LIMIT // 16384 + 2):
            data = payload(16384, seed)
            try:
                taken = pair.cleartext.write(data)
            except BufferFullError:
                return
            except LocalProtocolError:
                assert self.closed[side] or "write" not in ALLOWED[pair.state]
                return
            self.sent[side] += data[:taken]
        raise AssertionError(f"{side} took {2 * LIMIT} bytes without pushing back")

    @rule(side=SIDES, n=st.one_of(st.just(-1), st.integers(0, 50000)))
    def read(self, side: str, n: int) -> None:
        try:
            data = self.pairs[side].cleartext.read(n)
        except RaggedEOFError:
            # Raised once the data before the cut has been read.
            assert self.cut and not self.clean_end[side]
            assert self.pairs[side].cleartext.pending == 0
            return
        if n >= 0:
            assert len(data) <= n
        self.received[side] += data

    @rule(side=SIDES, nbytes=st.integers(1, 70000), cuts=CUTS)
    def deliver(self, side: str, nbytes: int, cuts: list[int]) -> None:
        """Move up to ``nbytes`` of what ``side`` sends into its peer."""
        self.move(side, nbytes, cuts)

    @precondition(lambda self: not self.cut)
    @rule()
    def hang_up(self) -> None:
        """The network connection dies: what was on its way is lost and
        both pairs see EOF.  A clean end for a side that had processed the
        peer's close_notify; otherwise a RaggedEOFError, now or once the
        application has read what came before the cut.  (OpenSSL queues a
        decode_error alert for the peer then; nobody can deliver it.)"""
        self.cut = True
        for side, pair in self.pairs.items():
            self.wire[side].clear()
            self.clean_end[side] = pair.state in (S.PEER_CLOSED, S.CLOSED)
            try:
                pair.encrypted.write_eof()
            except RaggedEOFError:
                assert not self.clean_end[side]
            if self.clean_end[side]:
                assert pair.state is S.CLOSED
            pair.encrypted.write_eof()  # a second EOF is no news

    @rule(side=SIDES)
    def close(self, side: str) -> None:
        self.pairs[side].close()
        self.closed[side] = True

    @rule(side=SIDES)
    def drain_events(self, side: str) -> None:
        pair = self.pairs[side]
        for event in pair.events():
            kind = type(event)
            seen = self.events[side]
            if not seen:
                assert kind is HandshakeComplete, f"{side}: {kind.__name__} came first"
            else:
                assert kind is not HandshakeComplete, "a second HandshakeComplete"
            assert CloseNotifyReceived not in seen or kind is not CleartextAvailable, (
                "data after close_notify"
            )
            assert kind is not CloseNotifyReceived or CloseNotifyReceived not in seen
            if kind is SessionTicket:
                assert side == "client"
            if kind is CleartextAvailable:
                assert event.nbytes > 0
                assert event.nbytes == pair.cleartext.pending
            if kind is AlertSent:
                # The pyOpenSSL backend reports every alert OpenSSL queues,
                # including the decode_error it queues when the network is
                # cut mid-record (see hang_up); nobody can deliver it.
                assert self.cut and event.description == "decode_error", event
            else:
                assert kind in (
                    HandshakeComplete,
                    SessionTicket,
                    CleartextAvailable,
                    CloseNotifyReceived,
                ), event
            seen.append(kind)

    @rule(side=SIDES)
    def details(self, side: str) -> None:
        pair = self.pairs[side]
        if pair.handshake_complete:
            assert pair.version in ("TLSv1.2", "TLSv1.3")
            assert pair.cipher
        else:
            try:
                pair.version  # noqa: B018
            except HandshakeNotCompleteError:
                return
            raise AssertionError("version known before the handshake")

    # -- helpers ------------------------------------------------------------

    def move(self, side: str, nbytes: int, cuts: list[int]) -> int:
        source, sink = self.pairs[side], self.pairs[self.peer[side]]
        self.wire[side] += source.encrypted.read()
        if self.cut:
            source.encrypted.read()  # into the void
            self.wire[side].clear()
            return 0
        chunk = bytes(self.wire[side][:nbytes])
        taken = 0
        for piece in fixed_cuts(cuts)(chunk):
            view = memoryview(piece)
            while view:
                try:
                    count = sink.encrypted.write(view)
                except BufferFullError:
                    # Backpressure: the rest stays on the wire.
                    del self.wire[side][:taken]
                    return taken
                assert 0 < count <= len(view)
                taken += count
                view = view[count:]
        del self.wire[side][:taken]
        return taken

    # -- invariants ---------------------------------------------------------

    @invariant()
    def states_are_legal(self) -> None:
        for side, pair in self.pairs.items():
            state = pair.state
            legal = LEGAL[self.states[side]]
            if self.cut and not self.clean_end[side]:
                legal = legal | {S.ERROR}
            assert state in legal, f"{side}: {self.states[side].value} -> {state.value}"
            self.states[side] = state
            if self.closed[side]:
                assert state in (S.HANDSHAKING, S.CLOSING, S.CLOSED, S.ERROR), state
            if state is S.ERROR:
                assert self.cut, "an error without a fault"
            if CloseNotifyReceived in self.events[side]:
                assert state in (S.PEER_CLOSED, S.CLOSED)
            if state is S.HANDSHAKING:
                assert not pair.handshake_complete
            elif state is not S.ERROR:
                assert pair.handshake_complete

    @invariant()
    def received_is_a_prefix_of_sent(self) -> None:
        for side in self.pairs:
            received = self.received[side]
            assert self.sent[self.peer[side]][: len(received)] == received

    @invariant()
    def buffers_are_bounded(self) -> None:
        for pair in self.pairs.values():
            assert pair.cleartext.pending <= LIMIT
            # A write may take up to the limit when the output is empty.
            assert pair.encrypted.pending <= 2 * LIMIT + 4096

    def teardown(self) -> None:
        self.flush()
        for side, pair in self.pairs.items():
            peer_sent = self.sent[self.peer[side]]
            if not self.cut or self.clean_end[side]:
                # Nothing was cut: every byte the peer's application wrote
                # was read by this side's.
                assert self.received[side] == peer_sent, (
                    f"{side} read {len(self.received[side])} bytes of {len(peer_sent)}"
                )
            if self.closed[side] and self.closed[self.peer[side]] and not self.cut:
                assert pair.state is S.CLOSED
            assert pair.trailing_data == b""


def test_interleavings(make_pair_link: Any, tls_version: str) -> None:
    class Machine(PairMachine):
        pass

    Machine.make_pair_link = staticmethod(make_pair_link)
    budget = examples(dev=60)
    run_state_machine_as_test(
        Machine,
        settings=settings(budget, stateful_step_count=40),
    )
