# Invariant: for every STARTTLS protocol, on both sides, whatever the peer
# sends in the plaintext phase -- fed whole, byte by byte or in pieces, the
# negotiator's own output taken out after every call as a transport would --
# each call makes progress or raises a typed StartTLSError (the negotiator
# then in ERROR; StartTLSUsageError only for a call the state does not
# allow), never another exception.  No byte received before the switch point
# is ever delivered as post-upgrade cleartext: a server shows no command that
# arrived after STARTTLS, a client refuses (InjectionError) any byte after
# the go-ahead, and when a real TLS peer then connects over the same stream,
# all the upgraded pair ever shows as cleartext is what that peer wrote.
"""Fuzzer of the STARTTLS negotiators (``securepair.starttls``).

Run with ``fuzz/run starttls``, or by hand:
``python fuzz/fuzz_starttls.py fuzz/corpus/starttls -max_total_time=60``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import atheris
import harness_support as hs

hs.use_instrumented_cframer()

with atheris.instrument_imports(include=["securepair"]):
    from securepair import SecurePair
    from securepair.errors import SecurePairError
    from securepair.starttls import (
        PROTOCOLS,
        ClientNegotiator,
        CommandReceived,
        PipelinePolicy,
        ServerNegotiator,
        State,
    )
    from securepair.starttls.errors import StartTLSError, StartTLSUsageError
    from securepair.testing.link import Link

NAMES = sorted(PROTOCOLS)
POLICIES = list(PipelinePolicy)
#: What the real TLS peer writes once connected.
MARK = b"written by the real peer after the handshake\n"

OPTIONS = (
    ("protocol", 0, len(NAMES) - 1),
    ("side", 0, 1),  # 0: fuzz the server negotiator (bytes from "the client")
    ("policy", 0, len(POLICIES) - 1),
    ("plaintext", 0, 1),  # client: allow_plaintext
    ("chunking", 0, 2),
    ("seed", 0, 255),
)


def encode_input(payload: bytes, **options: int) -> bytes:
    """The input that runs ``payload`` with these options (seeds)."""
    return payload + hs.encode_int_options(
        [(lo, hi, options.get(name, lo)) for name, lo, hi in OPTIONS]
    )


@functools.cache
def configs() -> tuple[Any, Any]:
    ids = hs.Identities()
    return hs.configs(ids, "stdlib", "TLSv1.3")


def make(name: str, server: bool, policy: PipelinePolicy, plaintext: bool) -> Any:
    proto = PROTOCOLS[name]
    cls = proto.server if server else proto.client
    assert cls is not None
    kwargs: dict[str, Any] = {}
    if name == "xmpp":
        kwargs["domain"] = hs.HOSTNAME
    if server:
        kwargs["policy"] = policy
    else:
        kwargs["allow_plaintext"] = plaintext
    return cls(**kwargs)


def feed(neg: Any, piece: bytes, after_starttls: list[bool]) -> bool:
    """Feed one piece; False once the negotiator failed (typed)."""
    try:
        neg.receive_data(piece)
    except StartTLSUsageError:
        # Documented: the negotiator is finished and the bytes are not its.
        assert neg.state in (State.UPGRADED, State.PLAINTEXT, State.CLOSED, State.ERROR)
        return False
    except StartTLSError:
        # Documented: the peer broke the protocol; ERROR for good.
        assert neg.state is State.ERROR, neg.state
        return False
    for event in neg.events():
        if isinstance(event, CommandReceived):
            # Nothing after STARTTLS is ever read as a command.
            assert not after_starttls[0], event
            if neg.waiting is not None:
                neg.reply_default()
    if neg.state is State.UPGRADE:
        after_starttls[0] = True
    neg.data_to_send()
    return True


def connect(neg: Any, server: bool) -> None:
    """Upgrade, connect a real TLS peer, and check what comes out."""
    client_config, server_config = configs()
    try:
        pair = neg.start_tls(
            server_config if server else client_config,
            **({} if server else {"server_hostname": hs.HOSTNAME}),
        )
    except SecurePairError:
        # Documented: the pipelined bytes were not TLS (e.g. NotTLSError).
        return
    if server:
        peer = SecurePair(client_config, server_side=False, server_hostname=hs.HOSTNAME)
        link = Link(peer, pair)
    else:
        peer = SecurePair(server_config, server_side=True)
        link = Link(pair, peer)
    received = bytearray()
    try:
        link.pump()
        if pair.handshake_complete and peer.handshake_complete:
            peer.cleartext.write(MARK)
            link.pump()
    except SecurePairError:
        # Documented: TLS failed (pipelined garbage before the handshake).
        pass
    received += pair.cleartext.read()
    assert MARK.startswith(received), bytes(received[:80])


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    opt = {name: fdp.ConsumeIntInRange(lo, hi) for name, lo, hi in OPTIONS}
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    name = NAMES[opt["protocol"]]
    server = opt["side"] == 0
    if server and PROTOCOLS[name].server is None:
        server = False
    neg = make(name, server, POLICIES[opt["policy"]], bool(opt["plaintext"]))
    assert isinstance(neg, ServerNegotiator if server else ClientNegotiator)
    neg.data_to_send()
    after_starttls = [False]
    for piece in hs.chunks(payload, opt["chunking"], opt["seed"]):
        if neg.state not in (State.NEGOTIATING, State.UPGRADE):
            break
        upgraded_before = neg.state is State.UPGRADE
        if not feed(neg, piece, after_starttls):
            if upgraded_before and not server:
                # A client refuses anything after the go-ahead.
                assert neg.state is State.ERROR
            return
    if neg.state is State.UPGRADE:
        connect(neg, server)


# --------------------------------------------------------------------------
# Seeds: real plaintext conversations, negotiator against negotiator.


def converse(name: str) -> tuple[bytes, bytes]:
    """(client to server, server to client) bytes of a plaintext phase run
    between the two negotiators up to the switch point."""
    client = make(name, False, PipelinePolicy.TLS_INPUT, False)
    server = make(name, True, PipelinePolicy.TLS_INPUT, False)
    c2s, s2c = bytearray(), bytearray()
    for _ in range(50):
        a, b = client.data_to_send(), server.data_to_send()
        if a and server.state is State.NEGOTIATING:
            c2s += a
            server.receive_data(a)
            for event in server.events():
                if isinstance(event, CommandReceived) and server.waiting is not None:
                    server.reply_default()
            b += server.data_to_send()
        if b and client.state is State.NEGOTIATING:
            s2c += b
            client.receive_data(b)
            list(client.events())
        if not a and not b:
            break
    return bytes(c2s), bytes(s2c)


def seed_inputs(hello: bytes) -> list[bytes]:
    """For each protocol and side: the peer's side of a real conversation,
    whole and in pieces; on the server also with a pipelined ClientHello
    (``hello``, from a real client) and with a pipelined command."""
    seeds = []
    for index, name in enumerate(NAMES):
        if PROTOCOLS[name].server is None:
            continue
        c2s, s2c = converse(name)
        for policy in range(len(POLICIES)):
            for tail in (b"", hello, b"RSET\r\n"):
                seeds.append(
                    encode_input(c2s + tail, protocol=index, side=0, policy=policy, chunking=2)
                )
        for plaintext in (0, 1):
            for chunking in (0, 1):
                seeds.append(
                    encode_input(
                        s2c, protocol=index, side=1, plaintext=plaintext, chunking=chunking
                    )
                )
            seeds.append(encode_input(s2c + b"250 injected\r\n", protocol=index, side=1))
    return seeds


def main() -> None:
    configs()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
