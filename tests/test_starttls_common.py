"""STARTTLS negotiators, every protocol, both sides, in memory.

The harness (used by the other ``test_starttls_*`` files too) connects a
client negotiator to a server negotiator through a simulated network that
cuts each direction by a chunking, exactly like a transport would: after
every piece a side receives, it is asked for what it wants to send (so the
negotiators' fences see a realistic order of calls), and a side that
reaches the switch point starts TLS as soon as its plaintext is out.  A
man in the middle (``tamper``) can append bytes right after the client's
STARTTLS command or the server's go-ahead.

Every protocol runs: whole, byte by byte, split at every byte offset of
each direction (so also between CR and LF), and in random chunkings from
hypothesis; each run ends with a real TLS handshake (certificates from
:mod:`securepair.certgen`), the capability follow-up inside TLS, and data
both ways.  The injection tests append a command after STARTTLS (server
side) or a response after the go-ahead (client side), split at every
offset, and check that none of it is ever executed or read as cleartext.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securepair import SecurePair, TLSConfig, certgen
from securepair.errors import NotTLSError
from securepair.starttls import (
    PROTOCOLS,
    ClientNegotiator,
    FTPClient,
    FTPServer,
    IMAPClient,
    IMAPServer,
    InjectionError,
    LDAPClient,
    LDAPServer,
    LMTPClient,
    LMTPServer,
    ManageSieveClient,
    ManageSieveServer,
    MySQLClient,
    NNTPClient,
    NNTPServer,
    PipelinePolicy,
    POP3Client,
    POP3Server,
    PostgreSQLClient,
    PostgreSQLServer,
    ServerNegotiator,
    SMTPClient,
    SMTPServer,
    State,
    XMPPClient,
    XMPPServer,
)
from securepair.starttls import _ber as ber
from securepair.starttls.events import CommandReceived, Event, ReadyToUpgrade
from securepair.starttls.ldap import starttls_request
from securepair.starttls.mysql import CLIENT_PROTOCOL_41, CLIENT_SSL
from securepair.starttls.postgres import SSL_REQUEST
from securepair.testing.link import Link

# --------------------------------------------------------------------------
# Certificates and configs (made once).

HOSTNAME = "localhost"
XMPP_DOMAIN = "example.com"


@functools.cache
def configs() -> tuple[TLSConfig, TLSConfig]:
    """(server config, client config): a CA, a leaf for localhost and the
    XMPP test domain, ECDSA (fast)."""
    ca = certgen.CertificateAuthority("starttls test CA")
    leaf = ca.issue([HOSTNAME, XMPP_DOMAIN, "127.0.0.1"])
    return TLSConfig(cert=leaf.cert_pem, key=leaf.key_pem), TLSConfig(ca=ca.cert_pem)


def examples(dev: int) -> settings:
    """Hypothesis settings worth ``dev`` examples under the dev profile,
    scaled with the loaded profile (as the engine's tests do)."""
    base = settings.default.max_examples
    return settings(max_examples=max(3, dev * base // 200), deadline=None)


# --------------------------------------------------------------------------
# Chunkings that know where they are in their direction's stream.


class Chunker:
    """Cuts each delivery of one direction; stateful across deliveries."""

    def __init__(self) -> None:
        self.offset = 0

    def cuts(self, data: bytes) -> list[int]:
        return []

    def __call__(self, data: bytes) -> Iterator[bytes]:
        cuts = sorted({c for c in self.cuts(data) if 0 < c < len(data)})
        pos = 0
        for cut in [*cuts, len(data)]:
            yield data[pos:cut]
            pos = cut
        self.offset += len(data)


class Whole(Chunker):
    pass


class ByteByByte(Chunker):
    def cuts(self, data: bytes) -> list[int]:
        return list(range(1, len(data)))


class SplitAt(Chunker):
    """One cut, at stream offset ``at`` of this direction."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def cuts(self, data: bytes) -> list[int]:
        return [self.at - self.offset]


class Sizes(Chunker):
    """Pieces of the given sizes, cycled over the whole stream."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = [max(1, s) for s in sizes] or [1]
        self.index = 0
        self.left = self.sizes[0]

    def cuts(self, data: bytes) -> list[int]:
        cuts = []
        pos = 0
        while pos + self.left < len(data):
            pos += self.left
            cuts.append(pos)
            self.index = (self.index + 1) % len(self.sizes)
            self.left = self.sizes[self.index]
        self.left -= len(data) - pos
        if self.left == 0:
            self.index = (self.index + 1) % len(self.sizes)
            self.left = self.sizes[self.index]
        return cuts


# --------------------------------------------------------------------------
# A MySQL server for the client's tests (the package has no MySQL server).


def mysql_handshake(
    caps: int = 0xFFFF | (0x81BF << 16), *, version: bytes = b"8.0.36", plugin: bytes | None = None
) -> bytes:
    """An Initial Handshake v10 packet (header included)."""
    scramble = b"abcdefghijklmnopqrst"
    payload = (
        b"\x0a"
        + version
        + b"\0"
        + struct.pack("<I", 42)
        + scramble[:8]
        + b"\0"
        + struct.pack("<H", caps & 0xFFFF)
        + bytes((255,))
        + struct.pack("<H", 2)
        + struct.pack("<H", caps >> 16)
        + bytes((21,))
        + b"\0" * 10
        + scramble[8:]
        + b"\0"
        + (plugin if plugin is not None else b"caching_sha2_password")
        + b"\0"
    )
    return len(payload).to_bytes(3, "little") + b"\0" + payload


class FakeMySQLServer:
    """Just enough of a MySQL server: the handshake, the SSLRequest, TLS."""

    protocol = "mysql"

    def __init__(self, caps: int = 0xFFFF | (0x81BF << 16)) -> None:
        self._out = bytearray(mysql_handshake(caps))
        self._in = bytearray()
        self.state = State.NEGOTIATING
        self.events_: list[Event] = []
        self.ssl_request = b""

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        self._in += data
        if self.state is State.NEGOTIATING and len(self._in) >= 36:
            self.ssl_request = bytes(self._in[:36])
            assert self.ssl_request[:4] == b"\x20\0\0\x01"
            (flags,) = struct.unpack_from("<I", self._in, 4)
            assert flags & CLIENT_SSL and flags & CLIENT_PROTOCOL_41
            del self._in[:36]
            self.state = State.UPGRADE
            self.events_.append(ReadyToUpgrade())

    def events(self) -> Iterator[Event]:
        while self.events_:
            yield self.events_.pop(0)

    def start_tls(self, config: Any, **_: Any) -> SecurePair:
        self.state = State.UPGRADED
        return SecurePair(config, server_side=True, initial_data=bytes(self._in))

    def followup(self) -> None:
        return None


# --------------------------------------------------------------------------
# Protocol specifications.


def _bind_request(message_id: int = 2) -> bytes:
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(
            ber.integer(3), ber.octets(b"cn=admin"), ber.octets(b"secret", 0x80), tag=0x60
        ),
    )


def _ldap_goahead(message_id: int = 1) -> bytes:
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(
            ber.enumerated(0),
            ber.octets(b""),
            ber.octets(b""),
            ber.octets(b"1.3.6.1.4.1.1466.20037", 0x8A),
            tag=0x78,
        ),
    )


XMPP_TLS_FEATURES = (
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>",
)


@dataclass(frozen=True)
class Spec:
    """How to test one protocol."""

    name: str
    client: Callable[..., ClientNegotiator]
    server: Callable[..., Any]
    #: The client's STARTTLS command, as it ends its last plaintext output.
    starttls: bytes
    #: The server's go-ahead, as it ends its last plaintext output.
    goahead: bytes
    #: A command a man in the middle pipelines after STARTTLS.
    injected_command: bytes
    #: A response a man in the middle appends to the go-ahead.
    injected_response: bytes
    #: What the client's follow-up must report inside TLS (None: none).
    tls_capabilities: tuple[str, ...] | None
    #: A second STARTTLS inside TLS, and how the server's refusal starts.
    second_starttls: bytes = b""
    refusal_in_tls: bytes = b""
    server_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def has_server(self) -> bool:
        return self.name != "mysql"


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec(
            "smtp",
            lambda **kw: SMTPClient(local_hostname="client.example", **kw),
            lambda **kw: SMTPServer(
                hostname="mx.example",
                capabilities=["PIPELINING", "SIZE 10240000"],
                tls_capabilities=["PIPELINING", "AUTH PLAIN"],
                **kw,
            ),
            b"STARTTLS\r\n",
            b"220 2.0.0 Ready to start TLS\r\n",
            b"RSET\r\nMAIL FROM:<mallory@example.org>\r\n",
            b"250-mx.example\r\n250 AUTH PLAIN\r\n",
            ("PIPELINING", "AUTH PLAIN"),
            b"STARTTLS\r\n",
            b"503 ",
        ),
        Spec(
            "lmtp",
            lambda **kw: LMTPClient(local_hostname="client.example", **kw),
            lambda **kw: LMTPServer(
                hostname="lmtp.example",
                capabilities=["PIPELINING"],
                tls_capabilities=["PIPELINING", "ENHANCEDSTATUSCODES"],
                **kw,
            ),
            b"STARTTLS\r\n",
            b"220 2.0.0 Ready to start TLS\r\n",
            b"RSET\r\n",
            b"250 OK\r\n",
            ("PIPELINING", "ENHANCEDSTATUSCODES"),
            b"STARTTLS\r\n",
            b"503 ",
        ),
        Spec(
            "imap",
            IMAPClient,
            lambda **kw: IMAPServer(
                capabilities=["IMAP4rev1"], tls_capabilities=["IMAP4rev1", "AUTH=PLAIN"], **kw
            ),
            b"a1 STARTTLS\r\n",
            b"a1 OK Begin TLS negotiation now\r\n",
            b"a2 LOGOUT\r\n",
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na2 OK done\r\n",
            ("IMAP4rev1", "AUTH=PLAIN"),
            b"x1 STARTTLS\r\n",
            b"x1 BAD ",
        ),
        Spec(
            "pop3",
            POP3Client,
            lambda **kw: POP3Server(
                capabilities=["TOP", "UIDL"], tls_capabilities=["TOP", "UIDL", "USER"], **kw
            ),
            b"STLS\r\n",
            b"+OK Begin TLS negotiation\r\n",
            b"USER alice\r\nPASS secret\r\n",
            b"+OK\r\n",
            ("TOP", "UIDL", "USER"),
            b"STLS\r\n",
            b"-ERR ",
        ),
        Spec(
            "nntp",
            NNTPClient,
            lambda **kw: NNTPServer(
                capabilities=["READER"], tls_capabilities=["READER", "AUTHINFO USER"], **kw
            ),
            b"STARTTLS\r\n",
            b"382 Continue with TLS negotiation\r\n",
            b"AUTHINFO USER alice\r\n",
            b"281 Authentication accepted\r\n",
            ("VERSION 2", "READER", "AUTHINFO USER"),
            b"STARTTLS\r\n",
            b"502 ",
        ),
        Spec(
            "ftp",
            FTPClient,
            lambda **kw: FTPServer(capabilities=["UTF8"], tls_capabilities=["UTF8", "MLST"], **kw),
            b"AUTH TLS\r\n",
            b"234 AUTH TLS successful\r\n",
            b"USER alice\r\n",
            b"331 Password required\r\n",
            ("PBSZ", "PROT", "UTF8", "MLST"),
            b"AUTH TLS\r\n",
            b"503 ",
        ),
        Spec(
            "sieve",
            ManageSieveClient,
            lambda **kw: ManageSieveServer(
                tls_capabilities=[
                    "IMPLEMENTATION securepair",
                    "SASL PLAIN",
                    "SIEVE fileinto vacation",
                    "VERSION 1.0",
                ],
                **kw,
            ),
            b"STARTTLS\r\n",
            b'OK "Begin TLS negotiation now."\r\n',
            b'AUTHENTICATE "PLAIN" "AGFsaWNlAHNlY3JldA=="\r\n',
            b'"SASL" "PLAIN"\r\nOK\r\n',
            ("IMPLEMENTATION securepair", "SASL PLAIN", "SIEVE fileinto vacation", "VERSION 1.0"),
            b"STARTTLS\r\n",
            b"NO ",
        ),
        Spec(
            "xmpp",
            lambda **kw: XMPPClient(XMPP_DOMAIN, **kw),
            lambda **kw: XMPPServer(
                XMPP_DOMAIN, stream_id="s1", tls_capabilities=XMPP_TLS_FEATURES, **kw
            ),
            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            b"<iq type='set' id='x'><query xmlns='jabber:iq:roster'/></iq>",
            b"<stream:features/>",
            ("mechanisms PLAIN SCRAM-SHA-1",),
        ),
        Spec(
            "ldap",
            LDAPClient,
            LDAPServer,
            starttls_request(1),
            _ldap_goahead(1),
            _bind_request(2),
            ber.sequence(
                ber.integer(2),
                ber.sequence(ber.enumerated(0), ber.octets(b""), ber.octets(b""), tag=0x61),
            ),
            None,
            starttls_request(5),
            b"",
        ),
        Spec(
            "postgres",
            PostgreSQLClient,
            PostgreSQLServer,
            SSL_REQUEST,
            b"S",
            struct.pack("!ii", 40, 3 << 16) + b"user\0mallory\0database\0postgres\0\0",
            b"R\0\0\0\x08\0\0\0\0",
            None,
        ),
        Spec(
            "mysql",
            MySQLClient,
            lambda **kw: FakeMySQLServer(),
            b"",  # the SSLRequest; computed by the client
            mysql_handshake(),
            b"",
            b"\x07\0\0\x02\0\0\0\x02\0\0\0",  # an OK packet
            None,
        ),
    )
}

assert set(SPECS) == set(PROTOCOLS), "every protocol has a spec"
ALL = sorted(SPECS)
WITH_SERVER = [n for n in ALL if SPECS[n].has_server]


# --------------------------------------------------------------------------
# The simulated network.


class Side:
    """One end: a negotiator, then the pair it started."""

    def __init__(self, negotiator: Any, config: TLSConfig, *, client: bool) -> None:
        self.neg = negotiator
        self.config = config
        self.client = client
        self.pair: SecurePair | None = None
        self.outbox = bytearray()
        self.events: list[Event] = []
        self.cleartext = bytearray()
        #: Everything the negotiator sent (the plaintext phase).
        self.plain = bytearray()
        self.handler: Callable[[Any, CommandReceived], None] = lambda n, e: n.reply_default()

    def _handle_events(self) -> None:
        while True:
            new = list(self.neg.events())
            if not new:
                return
            self.events += new
            for event in new:
                if isinstance(event, CommandReceived):
                    self.handler(self.neg, event)

    def flush(self) -> bytes:
        """What this side sends now (plaintext, then TLS)."""
        out = b""
        if self.pair is None:
            out = self.neg.data_to_send()
            self.plain += out
            if self.neg.state is State.UPGRADE:
                hostname = HOSTNAME if self.client and self.neg.protocol != "xmpp" else None
                self.pair = self.neg.start_tls(self.config, server_hostname=hostname)
        if self.pair is not None:
            out += self.pair.encrypted.read()
            self.cleartext += self.pair.cleartext.read()
        return out

    def feed(self, data: bytes) -> None:
        if self.pair is not None:
            view = memoryview(data)
            while view:
                view = view[self.pair.encrypted.write(view) :]
            self.cleartext += self.pair.cleartext.read()
            return
        self.neg.receive_data(data)
        self._handle_events()


Tamper = Callable[[bytes], bytes]


@dataclass
class Run:
    client: Side
    server: Side

    @property
    def c2s(self) -> bytes:
        """The client's plaintext phase, as it sent it."""
        return bytes(self.client.plain)

    @property
    def s2c(self) -> bytes:
        """The server's plaintext phase, as it sent it."""
        return bytes(self.server.plain)


def connect(
    spec: Spec,
    c2s: Chunker | None = None,
    s2c: Chunker | None = None,
    *,
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
    tamper_c2s: Tamper | None = None,
    tamper_s2c: Tamper | None = None,
    record: list[Side] | None = None,
    rounds: int = 200,
) -> Run:
    """Run the negotiation and start TLS; errors propagate.  ``record``
    gets the two sides (client first) as soon as they exist, so a test can
    inspect them after an error."""
    server_cfg, client_cfg = configs()
    client = Side(spec.client(**(client_kwargs or {})), client_cfg, client=True)
    server = Side(spec.server(**(server_kwargs or {})), server_cfg, client=False)
    if record is not None:
        record += [client, server]
    run = Run(client, server)
    c2s = c2s or Whole()
    s2c = s2c or Whole()
    for _ in range(rounds):
        moved = False
        for src, dst, chunker, tamper in (
            (client, server, c2s, tamper_c2s),
            (server, client, s2c, tamper_s2c),
        ):
            data = bytes(src.outbox) + src.flush()
            src.outbox.clear()
            if not data:
                continue
            if tamper is not None:
                data = tamper(data)
            moved = True
            for piece in chunker(data):
                dst.feed(piece)
                dst.outbox += dst.flush()
        if not moved:
            return run
    raise AssertionError("the conversation did not settle")


def after_goahead(spec: Spec, injected: bytes) -> Tamper:
    """A man in the middle that appends ``injected`` to the delivery that
    ends with the go-ahead (once)."""
    done = False

    def tamper(data: bytes) -> bytes:
        nonlocal done
        if not done and data.endswith(spec.goahead):
            done = True
            return data + injected
        return data

    return tamper


def after_starttls(spec: Spec, injected: bytes) -> Tamper:
    """A man in the middle that appends ``injected`` to the client's
    STARTTLS command (once)."""
    done = False

    def tamper(data: bytes) -> bytes:
        nonlocal done
        if not done and data.endswith(spec.starttls):
            done = True
            return data + injected
        return data

    return tamper


def secure_phase(run: Run, spec: Spec) -> None:
    """Inside TLS: the capability follow-up, a second STARTTLS refused,
    then application data both ways."""
    client, server = run.client, run.server
    assert client.pair is not None and server.pair is not None
    link = Link(client.pair, server.pair)
    link.handshake()
    cf = client.neg.followup()
    sf = server.neg.followup()
    if sf is not None:
        server.pair.cleartext.write(sf.data_to_send())
    if cf is not None:
        client.pair.cleartext.write(cf.data_to_send())
        for _ in range(20):
            link.pump()
            data = server.pair.cleartext.read()
            if data:
                if sf is not None and not sf.done:
                    sf.receive_data(data)
                    answer = sf.data_to_send()
                else:
                    answer = server.neg.answer_in_tls(data)
                assert answer, data
                server.pair.cleartext.write(answer)
                link.pump()
            got = client.pair.cleartext.read()
            if got:
                cf.receive_data(got)
            if cf.done:
                break
        assert cf.done
        assert cf.capabilities == spec.tls_capabilities
        assert cf.trailing_data == b""
    else:
        assert spec.tls_capabilities is None
    if spec.second_starttls and hasattr(server.neg, "answer_in_tls"):
        refusal = server.neg.answer_in_tls(spec.second_starttls)
        assert refusal is not None
        if spec.refusal_in_tls:
            assert refusal.startswith(spec.refusal_in_tls)
    client.pair.cleartext.write(b"client says hello inside TLS")
    link.pump()
    assert server.pair.cleartext.read() == b"client says hello inside TLS"
    server.pair.cleartext.write(b"server says hello inside TLS")
    link.pump()
    assert client.pair.cleartext.read() == b"server says hello inside TLS"


def check_upgraded(run: Run, spec: Spec) -> None:
    client, server = run.client, run.server
    assert client.neg.state is State.UPGRADED, client.neg.state
    assert server.neg.state is State.UPGRADED, server.neg.state
    assert [e for e in client.events if isinstance(e, ReadyToUpgrade)] == [ReadyToUpgrade()]
    assert len([e for e in server.events if isinstance(e, ReadyToUpgrade)]) == 1
    # The plaintext phase ended with the command and the go-ahead.
    if spec.starttls:
        assert spec.starttls in run.c2s
    assert spec.goahead in run.s2c
    assert run.client.cleartext == b"" and run.server.cleartext == b""


# --------------------------------------------------------------------------
# The whole exchange, every chunking.


@functools.cache
def transcript(name: str) -> tuple[int, int]:
    """Lengths of the plaintext transcripts (c2s up to the ClientHello,
    s2c up to the go-ahead) of an untouched run."""
    run = connect(SPECS[name])
    return len(run.c2s), len(run.s2c)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("chunking", ["whole", "byte_by_byte"])
def test_exchange(name: str, chunking: str) -> None:
    spec = SPECS[name]
    make = Whole if chunking == "whole" else ByteByByte
    run = connect(spec, make(), make())
    check_upgraded(run, spec)
    secure_phase(run, spec)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_exchange_split_at_every_offset(name: str, direction: str) -> None:
    spec = SPECS[name]
    c2s_len, s2c_len = transcript(name)
    length = c2s_len if direction == "c2s" else s2c_len
    for at in range(1, length + 1):
        if direction == "c2s":
            run = connect(spec, SplitAt(at), Whole())
        else:
            run = connect(spec, Whole(), SplitAt(at))
        check_upgraded(run, spec)
        assert run.client.pair is not None and run.server.pair is not None
        link = Link(run.client.pair, run.server.pair)
        link.handshake()
    # And one full secure phase at a cut between CR and LF.
    run = connect(spec, SplitAt(c2s_len - 1), SplitAt(s2c_len - 1))
    secure_phase(run, spec)


@pytest.mark.parametrize("name", ALL)
@examples(20)
@given(
    c2s=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    s2c=st.lists(st.integers(1, 40), min_size=1, max_size=6),
)
def test_exchange_random_chunks(name: str, c2s: list[int], s2c: list[int]) -> None:
    spec = SPECS[name]
    run = connect(spec, Sizes(c2s), Sizes(s2c))
    check_upgraded(run, spec)
    secure_phase(run, spec)


# --------------------------------------------------------------------------
# Command injection (server side).


def server_injection_outcome(
    spec: Spec, injected: bytes, c2s: Chunker, policy: PipelinePolicy
) -> str:
    """Run with ``injected`` pipelined after STARTTLS; return how it ended,
    after checking that nothing injected was ever executed or decrypted."""
    sides: list[Side] = []
    try:
        run = connect(
            spec,
            c2s,
            Whole(),
            server_kwargs={"policy": policy},
            tamper_c2s=after_starttls(spec, injected),
            record=sides,
        )
    except InjectionError as exc:
        assert policy is PipelinePolicy.ABORT
        assert exc.injected and injected.startswith(exc.injected)
        check_not_executed(sides[1], spec)
        assert sides[1].pair is None
        return "abort"
    except NotTLSError as exc:
        check_not_executed(sides[1], spec)
        # start_tls() raised; the negotiator still holds the failed pair.
        pair = sides[1].neg.pair
        assert pair is not None and pair.cleartext.read() == b""
        assert sides[1].cleartext == b"" and sides[0].cleartext == b""
        # The injected bytes (all of them, or what was left after the part
        # pipelined before the go-ahead was dropped) went to TLS as
        # handshake input: the handshake failed on them, as it should.
        assert exc.first_bytes and exc.first_bytes[:8] in injected
        return "not_tls"
    server = run.server
    check_not_executed(server, spec)
    assert policy is PipelinePolicy.DROP
    assert server.neg.dropped == len(injected)
    # The real client's handshake then works, and no injected byte shows.
    secure_phase(run, spec)
    return "dropped"


def check_not_executed(server: Side, spec: Spec) -> None:
    """Nothing the server did follows the STARTTLS command: no event after
    ReadyToUpgrade, nothing sent after the go-ahead."""
    kinds = [type(e) for e in server.events]
    if ReadyToUpgrade in kinds:
        assert kinds[-1] is ReadyToUpgrade
        assert server.plain.endswith(spec.goahead)


@pytest.mark.parametrize("name", WITH_SERVER)
@pytest.mark.parametrize("policy", list(PipelinePolicy))
def test_command_injection_at_every_offset(name: str, policy: PipelinePolicy) -> None:
    spec = SPECS[name]
    c2s_len, _ = transcript(name)
    total = c2s_len + len(spec.injected_command)
    outcomes = set()
    for at in range(1, total + 1):
        outcomes.add(server_injection_outcome(spec, spec.injected_command, SplitAt(at), policy))
    # Whole deliveries: the policy decides.
    expected = {
        PipelinePolicy.TLS_INPUT: "not_tls",
        PipelinePolicy.DROP: "dropped",
        PipelinePolicy.ABORT: "abort",
    }[policy]
    assert expected in outcomes
    assert outcomes <= {expected, "not_tls"}
    assert server_injection_outcome(spec, spec.injected_command, Whole(), policy) == expected


@pytest.mark.parametrize("name", WITH_SERVER)
def test_command_injection_byte_by_byte(name: str) -> None:
    spec = SPECS[name]
    for policy in PipelinePolicy:
        outcome = server_injection_outcome(spec, spec.injected_command, ByteByByte(), policy)
        # One byte per delivery: the go-ahead leaves before the injected
        # bytes arrive, so they are TLS input whatever the policy.
        assert outcome == "not_tls"


@functools.cache
def client_plaintext(name: str) -> bytes:
    """Everything an untouched client sends before its ClientHello."""
    run = connect(SPECS[name])
    length, _ = transcript(name)
    return bytes(run.c2s[:length])


@pytest.mark.parametrize("name", WITH_SERVER)
@pytest.mark.parametrize("chunking", ["whole", "byte_by_byte"])
def test_pipelined_client_hello_is_tls_input(name: str, chunking: str) -> None:
    """A client that pipelines its ClientHello right behind STARTTLS (RFC
    9051 allows it) gets TLS with the default policy: the server hands the
    pipelined bytes to the pair."""
    spec = SPECS[name]
    server_cfg, client_cfg = configs()
    hostname = XMPP_DOMAIN if name == "xmpp" else HOSTNAME
    early = SecurePair(client_cfg, server_side=False, server_hostname=hostname)
    hello = early.encrypted.read()
    server = spec.server()
    server.data_to_send()
    chunker = Whole() if chunking == "whole" else ByteByByte()
    for piece in chunker(client_plaintext(name) + hello):
        server.receive_data(piece)
        for event in server.events():
            if isinstance(event, CommandReceived):
                server.reply_default()
        if server.state is State.NEGOTIATING:
            server.data_to_send()
    assert server.state is State.UPGRADE
    assert server.data_to_send().endswith(spec.goahead)
    pair = server.start_tls(server_cfg)
    link = Link(early, pair)
    link.handshake()
    early.cleartext.write(b"hello")
    link.pump()
    assert pair.cleartext.read() == b"hello"


# --------------------------------------------------------------------------
# Response injection (client side).


def client_injection_outcome(spec: Spec, injected: bytes, s2c: Chunker) -> str:
    """Run with ``injected`` appended to the go-ahead; return how it ended.

    If the injected bytes arrive with the go-ahead, or before the client
    started TLS, the negotiator raises InjectionError.  If they arrive in a
    later delivery, after the client started TLS, they are TLS input for
    its pair, which fails with NotTLSError.  Never any cleartext.
    """
    sides: list[Side] = []
    try:
        connect(spec, Whole(), s2c, tamper_s2c=after_goahead(spec, injected), record=sides)
    except InjectionError as exc:
        assert exc.injected and exc.injected[:8] in injected
        assert sides[0].pair is None
        return "injection"
    except NotTLSError as exc:
        assert exc.first_bytes[:8] in injected
        pair = sides[0].pair
        assert pair is not None and pair.cleartext.read() == b""
        assert sides[0].cleartext == b""
        return "not_tls"
    raise AssertionError("the injected response was accepted")


@pytest.mark.parametrize("name", ALL)
def test_response_injection_at_every_offset(name: str) -> None:
    spec = SPECS[name]
    _, s2c_len = transcript(name)
    injected = spec.injected_response
    assert client_injection_outcome(spec, injected, Whole()) == "injection"
    outcomes = {client_injection_outcome(spec, injected, ByteByByte())}
    for at in range(1, s2c_len + len(injected) + 1):
        outcome = client_injection_outcome(spec, injected, SplitAt(at))
        # A cut right after the go-ahead: the client started TLS before the
        # injected bytes came, so its pair refuses them.  Any other cut: some
        # injected bytes arrive with the go-ahead.
        assert outcome == ("not_tls" if at == s2c_len else "injection"), at
        outcomes.add(outcome)
    assert outcomes == {"injection", "not_tls"}


@pytest.mark.parametrize("name", ALL)
def test_response_injected_after_upgrade_goes_to_tls(name: str) -> None:
    """Bytes that arrive after start_tls() are TLS input for the client's
    pair: they fail the handshake and are never cleartext."""
    spec = SPECS[name]
    run = connect(spec)
    assert run.client.pair is not None
    fresh_server_cfg, client_cfg = configs()
    del fresh_server_cfg
    pair = SecurePair(client_cfg, server_side=False, server_hostname=HOSTNAME)
    with pytest.raises(NotTLSError):
        pair.encrypted.write(spec.injected_response + b"\r\n" * 4)
    assert pair.cleartext.read() == b""


@pytest.mark.parametrize("name", ALL)
@examples(20)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6))
def test_response_injection_random_chunks(name: str, sizes: list[int]) -> None:
    spec = SPECS[name]
    client_injection_outcome(spec, spec.injected_response, Sizes(sizes))


@pytest.mark.parametrize("name", WITH_SERVER)
@examples(20)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6))
def test_command_injection_random_chunks(name: str, sizes: list[int]) -> None:
    spec = SPECS[name]
    outcome = server_injection_outcome(
        spec, spec.injected_command, Sizes(sizes), PipelinePolicy.TLS_INPUT
    )
    assert outcome == "not_tls"


# --------------------------------------------------------------------------
# Whatever the peer sends: a typed error or a legal state, never a crash.


@functools.cache
def peer_plaintext(name: str, side: str) -> bytes:
    """What the peer of ``side`` sends in an untouched run."""
    run = connect(SPECS[name])
    return run.s2c if side == "client" else run.c2s


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([0x00, 0x0A, 0x0D, 0x20, 0x22, 0x3C, 0x7B, 0xFF, 0x30]))
        if kind == "insert":
            data[where:where] = bytes((byte,))
        elif where < len(data):
            if kind == "replace":
                data[where] = byte
            else:
                del data[where]
    return bytes(data) + draw(st.binary(max_size=8))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("side", ["client", "server"])
@examples(30)
@given(data=st.data())
def test_mutated_input_gives_typed_errors_only(name: str, side: str, data: st.DataObject) -> None:
    from securepair.starttls import StartTLSError

    spec = SPECS[name]
    if side == "server" and not spec.has_server:
        return
    stream = data.draw(mutated(peer_plaintext(name, side)))
    sizes = data.draw(st.lists(st.integers(1, 16), min_size=1, max_size=4))
    neg = spec.client() if side == "client" else spec.server()
    neg.data_to_send()
    try:
        for piece in Sizes(sizes)(stream):
            if neg.state not in (State.NEGOTIATING, State.UPGRADE):
                break
            neg.receive_data(piece)
            for event in neg.events():
                if isinstance(event, CommandReceived) and neg.waiting is event:
                    neg.reply_default()
            neg.data_to_send()
    except StartTLSError:
        assert neg.state is State.ERROR
    assert neg.state in State


# --------------------------------------------------------------------------
# Things every negotiator does the same way.


@pytest.mark.parametrize("name", ALL)
def test_start_tls_needs_the_switch_point(name: str) -> None:
    from securepair.starttls import StartTLSUsageError

    spec = SPECS[name]
    neg = spec.client()
    with pytest.raises(StartTLSUsageError):
        neg.start_tls(configs()[1])
    with pytest.raises(StartTLSUsageError):
        neg.followup()


@pytest.mark.parametrize("name", WITH_SERVER)
def test_server_start_tls_needs_goahead_sent(name: str) -> None:
    """The go-ahead must leave before the first TLS byte."""
    from securepair.starttls import StartTLSUsageError

    spec = SPECS[name]
    run_client = spec.client()
    server = spec.server()
    # Drive by hand, but keep the server's last output unsent.
    for _ in range(10):
        out = run_client.data_to_send()
        if out:
            server.receive_data(out)
            for event in server.events():
                if isinstance(event, CommandReceived):
                    server.reply_default()
        if server.state is State.UPGRADE:
            break
        out = server.data_to_send()
        if out:
            run_client.receive_data(out)
    assert server.state is State.UPGRADE
    with pytest.raises(StartTLSUsageError):
        server.start_tls(configs()[0])
    assert server.data_to_send().endswith(spec.goahead)
    server.start_tls(configs()[0])


@pytest.mark.parametrize("name", ALL)
def test_client_eof_is_peer_closed(name: str) -> None:
    from securepair.starttls import PeerClosedError

    neg = SPECS[name].client()
    with pytest.raises(PeerClosedError):
        neg.receive_data(b"")
    assert neg.state is State.ERROR


@pytest.mark.parametrize("name", WITH_SERVER)
def test_server_eof_is_connection_closed(name: str) -> None:
    from securepair.starttls.events import ConnectionClosed

    neg = SPECS[name].server()
    neg.receive_data(b"")
    assert neg.state is State.CLOSED
    assert list(neg.events()) == [ConnectionClosed(reason="eof")]


@pytest.mark.parametrize("name", ALL)
def test_receive_after_upgrade_is_usage_error(name: str) -> None:
    from securepair.starttls import StartTLSUsageError

    spec = SPECS[name]
    run = connect(spec)
    with pytest.raises(StartTLSUsageError):
        run.client.neg.receive_data(b"x")


def test_registry_matches_classes() -> None:
    for name, proto in PROTOCOLS.items():
        assert proto.client.protocol == name
        if proto.server is not None:
            assert proto.server.protocol == name
            assert issubclass(proto.server, ServerNegotiator)
        assert issubclass(proto.client, ClientNegotiator)


# --------------------------------------------------------------------------
# Helpers for the protocol-specific files.


def script(neg: Any, *messages: bytes) -> tuple[list[Event], bytes]:
    """Feed ``messages`` one at a time, taking the negotiator's output
    after each (as a transport would).  Returns (events, all output)."""
    events: list[Event] = []
    out = bytearray(neg.data_to_send())
    for message in messages:
        neg.receive_data(message)
        events += neg.events()
        out += neg.data_to_send()
    return events, bytes(out)


def serve(neg: Any, *commands: bytes, answer: bool = True) -> tuple[list[Event], bytes]:
    """Feed a server negotiator ``commands``; answer each CommandReceived
    with reply_default() when ``answer``.  Returns (events, output after
    the greeting)."""
    neg.data_to_send()
    events: list[Event] = []
    out = bytearray()
    for command in commands:
        neg.receive_data(command)
        while True:
            new = list(neg.events())
            if not new:
                break
            events += new
            if answer:
                for event in new:
                    if isinstance(event, CommandReceived) and neg.waiting is event:
                        neg.reply_default()
        out += neg.data_to_send()
    return events, bytes(out)
