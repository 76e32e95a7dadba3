"""A man in the middle between two pairs, working on whole TLS records.

:class:`TamperLink` is a :class:`~securepair.testing.link.Link` that cuts
each direction's byte stream into records (with :func:`securepair.records.scan`)
and follows a :class:`TamperPlan`: drop, duplicate, truncate, reorder, delay,
flip bits in, replace, or inject records and alerts.  Each :class:`Tamper`
names the direction and the record it applies to (the n-th record that way,
or the n-th of one content type), so a plan replays exactly; and
:meth:`TamperPlan.random` makes one from a seed.  No clock, no sockets, no
threads: the same plan over the same configuration always meets the same
records.

It is the tool for checking what *your* code does when the network or an
attacker misbehaves::

    link = TamperLink(client, server, TamperPlan.of(
        Tamper(FlipBits(offset=-1), direction=SERVER_TO_CLIENT, content_type=23)
    ))
    link.handshake()
    server.cleartext.write(b"hello")
    outcome = link.settle()
    assert isinstance(outcome.client, TLSError)      # bad_record_mac
    assert outcome.client.alert == "bad_record_mac"
    assert isinstance(outcome.server, TLSAlertReceivedError)  # the alert came back

Records are counted as they leave the sender, before any tampering, from 0,
separately per direction.  During a TLS 1.3 handshake most records already
have the outer type ``application_data`` (23); :attr:`TamperLink.applied`
lists what was done to which record, for the message of a failing test.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from ..alerts import ALERT_NAMES
from ..errors import RecordError, SecurePairError
from ..pair import SecurePair
from ..records import HEADER_LENGTH, scan
from .link import Chunking, Link, whole

__all__ = [
    "Direction",
    "CLIENT_TO_SERVER",
    "SERVER_TO_CLIENT",
    "Action",
    "Drop",
    "Duplicate",
    "Truncate",
    "Reorder",
    "Delay",
    "FlipBits",
    "Inject",
    "Replace",
    "Tamper",
    "TamperPlan",
    "Applied",
    "Outcome",
    "TamperLink",
    "record",
    "alert_record",
    "ALERT_CODES",
]

#: Which way a record travels.
Direction = Literal["client_to_server", "server_to_client"]
CLIENT_TO_SERVER: Direction = "client_to_server"
SERVER_TO_CLIENT: Direction = "server_to_client"

#: Alert description name -> code (RFC 8446 6), the inverse of
#: :data:`securepair.alerts.ALERT_NAMES`.
ALERT_CODES: dict[str, int] = {name: code for code, name in ALERT_NAMES.items()}

#: The largest length a record header can state; the link frames whatever
#: a peer sends and leaves judging the length to the receiving pair.
_ANY_LENGTH = 0xFFFF


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    """One TLS record: a 5-byte header (type, legacy version, length) and
    ``payload``."""
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def alert_record(description: str | int, *, fatal: bool = True, version: int = 0x0303) -> bytes:
    """A plaintext alert record, e.g. ``alert_record("handshake_failure")``.

    Before the handshake encrypts the stream (all of TLS 1.2's handshake,
    TLS 1.3 until the ServerHello) this is exactly what a peer sends.
    """
    code = ALERT_CODES[description] if isinstance(description, str) else description
    return record(21, bytes([2 if fatal else 1, code]), version)


# --------------------------------------------------------------------------
# Actions: what to do to one record.


@dataclass(frozen=True)
class Action:
    """Base class of the things a :class:`Tamper` can do to a record."""


@dataclass(frozen=True)
class Drop(Action):
    """The record never arrives."""


@dataclass(frozen=True)
class Duplicate(Action):
    """The record arrives ``1 + times`` times in a row (a replay)."""

    #: Extra copies.
    times: int = 1

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ValueError(f"times must be 1 or more, not {self.times}")


@dataclass(frozen=True)
class Truncate(Action):
    """Only the first ``keep`` bytes of the record's body arrive.

    With ``fix_length`` (the default) the header is rewritten to match, so
    the receiver sees a complete but short record (an AEAD record then fails
    to decrypt).  Without it the header still states the full length and the
    receiver takes the following bytes as the rest of the body.
    """

    #: Body bytes kept (at most the body's length).
    keep: int = 0
    #: Rewrite the header's length field to the kept size.
    fix_length: bool = True


@dataclass(frozen=True)
class Reorder(Action):
    """The record swaps places with the next record in the same direction
    (it is held until that one has passed, or until :meth:`TamperLink.flush`)."""


@dataclass(frozen=True)
class Delay(Action):
    """The record is held back until ``records`` more records have passed
    in the same direction; with ``records=None`` until
    :meth:`TamperLink.flush`."""

    records: int | None = 1

    def __post_init__(self) -> None:
        if self.records is not None and self.records < 1:
            raise ValueError(f"records must be 1 or more (or None), not {self.records}")


@dataclass(frozen=True)
class FlipBits(Action):
    """XOR ``mask`` into the byte at ``offset`` of the record (header
    included: 0 is the content type, 3-4 the length).  A negative offset
    counts from the end; an offset past the end wraps around."""

    offset: int = -1
    mask: int = 0x01

    def __post_init__(self) -> None:
        if not 0 < self.mask <= 0xFF:
            raise ValueError(f"mask must be 1-255, not {self.mask}")


@dataclass(frozen=True)
class Inject(Action):
    """Insert ``data`` (any bytes: records made with :func:`record` or
    :func:`alert_record`, or garbage) before the record, or after it."""

    data: bytes
    after: bool = False


@dataclass(frozen=True)
class Replace(Action):
    """Send ``data`` in place of the record."""

    data: bytes


@dataclass(frozen=True)
class Tamper:
    """Do ``action`` to one record: the ``index``-th record (from 0) going in
    ``direction``, counting only records of ``content_type`` if given."""

    action: Action
    direction: Direction = CLIENT_TO_SERVER
    index: int = 0
    content_type: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in (CLIENT_TO_SERVER, SERVER_TO_CLIENT):
            raise ValueError(f"direction must be {CLIENT_TO_SERVER!r} or {SERVER_TO_CLIENT!r}")
        if self.index < 0:
            raise ValueError(f"index must be 0 or more, not {self.index}")


#: Action kinds :meth:`TamperPlan.random` chooses from, by name.
RANDOM_ACTIONS = ("drop", "duplicate", "truncate", "reorder", "delay", "flip", "inject_alert")


@dataclass(frozen=True)
class TamperPlan:
    """The tamperings a :class:`TamperLink` applies, in order."""

    tampers: tuple[Tamper, ...] = ()

    @classmethod
    def of(cls, *tampers: Tamper) -> TamperPlan:
        """A plan of these tamperings."""
        return cls(tuple(tampers))

    @classmethod
    def random(
        cls,
        seed: int,
        *,
        count: int = 1,
        max_index: int = 6,
        directions: Sequence[Direction] = (CLIENT_TO_SERVER, SERVER_TO_CLIENT),
        actions: Sequence[str] = RANDOM_ACTIONS,
    ) -> TamperPlan:
        """``count`` tamperings chosen by ``random.Random(seed)``: the same
        seed gives the same plan on every machine and Python version."""
        rng = random.Random(seed)
        tampers = []
        for _ in range(count):
            kind = actions[rng.randrange(len(actions))]
            action: Action
            if kind == "drop":
                action = Drop()
            elif kind == "duplicate":
                action = Duplicate(times=rng.randint(1, 2))
            elif kind == "truncate":
                action = Truncate(keep=rng.randint(0, 64), fix_length=rng.random() < 0.5)
            elif kind == "reorder":
                action = Reorder()
            elif kind == "delay":
                action = Delay(records=rng.choice([1, 2, 3, None]))
            elif kind == "flip":
                action = FlipBits(offset=rng.randint(-64, 64), mask=1 << rng.randrange(8))
            elif kind == "inject_alert":
                name = rng.choice(sorted(ALERT_CODES))
                action = Inject(alert_record(name, fatal=rng.random() < 0.8))
            else:
                raise ValueError(f"unknown action kind {kind!r}; known: {RANDOM_ACTIONS}")
            direction = directions[rng.randrange(len(directions))]
            tampers.append(Tamper(action, direction, rng.randint(0, max_index)))
        return cls(tuple(tampers))


class Applied(NamedTuple):
    """One tampering done: which record it met and what it did."""

    direction: Direction
    #: Index of the record among all records in its direction (from 0).
    record_index: int
    content_type: int
    length: int
    action: Action


class Outcome(NamedTuple):
    """What :meth:`TamperLink.settle` saw: the error each pair raised, or
    None for a pair that raised nothing."""

    client: SecurePairError | None
    server: SecurePairError | None


# --------------------------------------------------------------------------
# The link.


@dataclass
class _Held:
    """A record held back: ``left`` more records must pass first (None:
    until a flush)."""

    left: int | None
    data: bytes


@dataclass
class _Way:
    """The tampering state of one direction."""

    direction: Direction
    tampers: list[Tamper]
    #: Bytes of a record not yet complete.
    partial: bytearray = field(default_factory=bytearray)
    #: Records seen so far, in all and per content type.
    count: int = 0
    by_type: dict[int, int] = field(default_factory=dict)
    #: Records held back, oldest first.
    held: list[_Held] = field(default_factory=list)
    #: The stream stopped being records (a peer that is not TLS): bytes
    #: now pass untouched.
    raw: bool = False


class TamperLink(Link):
    """Two pairs connected through a record-level man in the middle.

    Without a plan it behaves exactly like :class:`Link`.  ``pump()`` and
    ``handshake()`` raise the first error a pair raises, as on a
    :class:`Link`; :meth:`settle` instead keeps carrying bytes both ways
    (so the alert a failing pair sends reaches its peer) until nothing
    moves, and reports each side's error.
    """

    def __init__(
        self,
        client: SecurePair,
        server: SecurePair,
        plan: TamperPlan | Iterable[Tamper] = (),
        chunking: Chunking = whole,
    ) -> None:
        super().__init__(client, server, chunking)
        self.plan = plan if isinstance(plan, TamperPlan) else TamperPlan(tuple(plan))
        self._ways = {
            d: _Way(d, [t for t in self.plan.tampers if t.direction == d])
            for d in (CLIENT_TO_SERVER, SERVER_TO_CLIENT)
        }
        #: What was done, in order.
        self.applied: list[Applied] = []
        #: The bytes each pair was actually given, after tampering.
        self.delivered_to_server = bytearray()
        self.delivered_to_client = bytearray()
        self._errors: dict[str, SecurePairError] = {}

    def arm(self, plan: TamperPlan | Iterable[Tamper]) -> None:
        """Follow ``plan`` from now on, counting records from 0 again: so
        ``link.handshake(); link.arm(plan)`` tampers only with what is sent
        after the handshake (TLS 1.3 session tickets included, since
        ``handshake()`` pumps until the link is quiet)."""
        self.flush()
        self.plan = plan if isinstance(plan, TamperPlan) else TamperPlan(tuple(plan))
        for direction, way in self._ways.items():
            way.tampers = [t for t in self.plan.tampers if t.direction == direction]
            way.count = 0
            way.by_type.clear()
            way.raw = False

    # -- moving bytes --------------------------------------------------------

    def _move(self, source: SecurePair, sink: SecurePair, log: bytearray) -> int:
        data = source.encrypted.read()
        if not data:
            return 0
        log += data
        way = self._ways[CLIENT_TO_SERVER if source is self.client else SERVER_TO_CLIENT]
        self._deliver(sink, self._tamper(way, data))
        return len(data)

    def _deliver(self, sink: SecurePair, data: bytes) -> None:
        if not data:
            return
        name = "server" if sink is self.server else "client"
        if name in self._errors:
            return  # it failed: nothing more reaches it
        (self.delivered_to_server if name == "server" else self.delivered_to_client).extend(data)
        for piece in self.chunking(data):
            view = memoryview(piece)
            while view:
                taken = sink.encrypted.write(view)
                view = view[taken:]

    def _tamper(self, way: _Way, data: bytes) -> bytes:
        if way.raw or not way.tampers:
            return self._release_all(way) + data if way.held else data
        way.partial += data
        try:
            found = scan(way.partial, _ANY_LENGTH)
        except RecordError as exc:
            # Not a record stream (any more): pass the rest through as is.
            out = bytearray(self._release_all(way))
            records = scan(way.partial[: exc.offset], _ANY_LENGTH).records
            for rec in records:
                out += self._one(way, bytes(way.partial[rec.offset : rec.end]), rec.content_type)
            out += way.partial[exc.offset :]
            way.partial.clear()
            way.raw = True
            return bytes(out)
        out = bytearray()
        for rec in found.records:
            out += self._one(way, bytes(way.partial[rec.offset : rec.end]), rec.content_type)
        del way.partial[: found.consumed]
        return bytes(out)

    def _one(self, way: _Way, rec: bytes, content_type: int) -> bytes:
        """Apply the plan to one complete record; returns the bytes to send
        now (with any held records that are due)."""
        index = way.count
        typed = way.by_type.get(content_type, 0)
        way.count += 1
        way.by_type[content_type] = typed + 1
        before = b""
        after = b""
        current: bytes | None = rec
        hold: int | Literal[False] | None = False
        for tamper in way.tampers:
            wanted = typed if tamper.content_type is not None else index
            if tamper.index != wanted or (
                tamper.content_type is not None and tamper.content_type != content_type
            ):
                continue
            action = tamper.action
            self.applied.append(Applied(way.direction, index, content_type, len(rec), action))
            if current is None:
                continue  # already dropped: the rest is only logged
            if isinstance(action, Drop):
                current = None
            elif isinstance(action, Duplicate):
                current = current * (1 + action.times)
            elif isinstance(action, Truncate):
                body = current[HEADER_LENGTH:][: max(0, action.keep)]
                header = bytearray(current[:HEADER_LENGTH])
                if action.fix_length:
                    header[3:5] = len(body).to_bytes(2, "big")
                current = bytes(header) + body
            elif isinstance(action, Reorder):
                hold = 1
            elif isinstance(action, Delay):
                hold = action.records
            elif isinstance(action, FlipBits):
                if not current:
                    continue  # replaced by nothing: no bit to flip
                flipped = bytearray(current)
                flipped[action.offset % len(flipped)] ^= action.mask
                current = bytes(flipped)
            elif isinstance(action, Inject):
                if action.after:
                    after += action.data
                else:
                    before += action.data
            elif isinstance(action, Replace):
                current = action.data
            else:
                raise TypeError(f"unknown tampering action {action!r}")
        out = bytearray(before)
        if current is not None and hold is not False:
            # Held: it passes later, after `hold` more records.
            way.held.append(_Held(hold, current + after))
            return bytes(out)
        if current is not None:
            out += current
        out += after
        if current is not None:
            out += self._due(way)
        return bytes(out)

    def _due(self, way: _Way) -> bytes:
        """One more record passed: release the held records now due."""
        out = bytearray()
        keep = []
        for entry in way.held:
            if entry.left is not None:
                entry.left -= 1
                if entry.left <= 0:
                    out += entry.data
                    continue
            keep.append(entry)
        way.held = keep
        return bytes(out)

    @staticmethod
    def _release_all(way: _Way) -> bytes:
        out = b"".join(entry.data for entry in way.held)
        way.held.clear()
        return out

    # -- driving -------------------------------------------------------------

    def flush(self) -> int:
        """Deliver every held record (delayed, waiting for a reorder) and any
        incomplete record the link was still framing; returns the bytes."""
        moved = 0
        for direction, sink in ((CLIENT_TO_SERVER, self.server), (SERVER_TO_CLIENT, self.client)):
            way = self._ways[direction]
            data = self._release_all(way) + bytes(way.partial)
            way.partial.clear()
            moved += len(data)
            self._deliver_catching(sink, data)
        return moved

    def _deliver_catching(self, sink: SecurePair, data: bytes) -> None:
        name = "server" if sink is self.server else "client"
        try:
            self._deliver(sink, data)
        except SecurePairError as exc:
            self._errors.setdefault(name, exc)

    def settle(self, max_rounds: int = 1000) -> Outcome:
        """Carry bytes both ways until nothing moves, catching each pair's
        first error (so the alert a failing pair sends still reaches its
        peer).  Held records stay held (see :meth:`flush`).  Returns what
        each pair raised."""
        for _ in range(max_rounds):
            moved = 0
            for source, sink, log in (
                (self.client, self.server, self.client_to_server),
                (self.server, self.client, self.server_to_client),
            ):
                name = "server" if sink is self.server else "client"
                try:
                    moved += self._move(source, sink, log)
                except SecurePairError as exc:
                    self._errors.setdefault(name, exc)
                    moved += 1
            if not moved:
                return Outcome(self._errors.get("client"), self._errors.get("server"))
        raise RuntimeError(f"link still busy after {max_rounds} rounds")

    def eof(self, side: Literal["client", "server"]) -> SecurePairError | None:
        """The transport toward ``side`` ends (what a TCP FIN does): the pair
        gets ``write_eof()``.  Returns the error it raised, if any."""
        pair = self.client if side == "client" else self.server
        try:
            pair.encrypted.write_eof()
        except SecurePairError as exc:
            self._errors.setdefault(side, exc)
            return exc
        return None
