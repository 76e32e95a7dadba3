"""An in-memory link that carries bytes between two pairs.

The link plays the network: it reads what each pair wants to send and writes
it into the other, cut into pieces by a :data:`Chunking`.  Cutting the same
conversation whole, byte by byte and at random places is how the engine's
tests show that no result depends on how the network happened to split it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from ..pair import SecurePair

#: Cuts a byte string into the pieces a network would deliver.
Chunking = Callable[[bytes], Iterator[bytes]]


def whole(data: bytes) -> Iterator[bytes]:
    """Deliver everything at once."""
    if data:
        yield data


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    """Deliver one byte at a time."""
    for i in range(len(data)):
        yield data[i : i + 1]


def random_chunks(seed: int, max_size: int = 64) -> Chunking:
    """Deliver pieces of 1..``max_size`` bytes, chosen by a seeded RNG."""
    rng = random.Random(seed)

    def chunking(data: bytes) -> Iterator[bytes]:
        pos = 0
        while pos < len(data):
            size = rng.randint(1, max_size)
            yield data[pos : pos + size]
            pos += size

    return chunking


def fixed_cuts(cuts: list[int]) -> Chunking:
    """Deliver pieces of the given sizes (cycled); used with hypothesis."""
    sizes = [max(1, c) for c in cuts] or [1]

    def chunking(data: bytes) -> Iterator[bytes]:
        pos = 0
        i = 0
        while pos < len(data):
            size = sizes[i % len(sizes)]
            yield data[pos : pos + size]
            pos += size
            i += 1

    return chunking


class Link:
    """Two pairs connected back to back in memory."""

    def __init__(self, client: SecurePair, server: SecurePair, chunking: Chunking = whole) -> None:
        self.client = client
        self.server = server
        self.chunking = chunking
        #: Every byte that went client -> server and server -> client.
        self.client_to_server = bytearray()
        self.server_to_client = bytearray()

    def _move(self, source: SecurePair, sink: SecurePair, log: bytearray) -> int:
        data = source.encrypted.read()
        if not data:
            return 0
        log += data
        for piece in self.chunking(data):
            view = memoryview(piece)
            while view:
                taken = sink.encrypted.write(view)
                view = view[taken:]
        return len(data)

    def pump(self, max_rounds: int = 1000) -> int:
        """Move bytes both ways until neither side has anything to send."""
        moved = 0
        for _ in range(max_rounds):
            step = self._move(self.client, self.server, self.client_to_server)
            step += self._move(self.server, self.client, self.server_to_client)
            if not step:
                return moved
            moved += step
        raise RuntimeError(f"link still busy after {max_rounds} rounds")

    def handshake(self) -> None:
        """Pump until both pairs have completed the handshake."""
        self.pump()
        if not (self.client.handshake_complete and self.server.handshake_complete):
            raise RuntimeError(
                f"handshake stalled: client {self.client.state.value}, "
                f"server {self.server.state.value}"
            )
