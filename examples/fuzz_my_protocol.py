"""Recipe: fuzz your own protocol over TLS, in memory, with hypothesis or atheris.

The protocol here is a toy line-based key-value store ("SET key value",
"GET key"); put yours in its place.  Both ends run on SecurePairs joined by a
TamperLink: no sockets, no threads, no clock, so every run replays exactly.
The fuzzer chooses what the client sends, how the network cuts the bytes,
and what a man in the middle does to the TLS records.  The invariants:

1. The application never fails except in its own documented way
   (``ProtocolError`` for a bad request); securepair never fails except with
   a typed ``SecurePairError``.
2. Whatever the man in the middle does, the server application only ever
   sees a prefix of what the client application sent, and the client only
   a prefix of the server's replies: TLS lets tampering stop a connection,
   never change what arrives.
3. Nothing hangs: every loop here is bounded.

Run it:

    python examples/fuzz_my_protocol.py                      # hypothesis, 200 examples
    python examples/fuzz_my_protocol.py --examples 2000
    python examples/fuzz_my_protocol.py --atheris -runs=5000  # atheris / libFuzzer
    python examples/fuzz_my_protocol.py --atheris corpus/ -max_total_time=600
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securepair import SecurePair, TLSConfig
from securepair.certgen import CertificateAuthority
from securepair.errors import SecurePairError
from securepair.testing import TamperLink, TamperPlan, fixed_cuts, whole
from securepair.testing import strategies as sps

# --------------------------------------------------------------------------
# The application under test: your protocol handler, sans-IO.


class ProtocolError(Exception):
    """A request the protocol does not allow (the documented failure)."""


class KVServer:
    """Reads request lines, answers reply lines."""

    MAX_LINE = 1024

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.buffer = bytearray()

    def receive(self, data: bytes) -> bytes:
        """Feed request bytes; return the replies they produce."""
        self.buffer += data
        replies = bytearray()
        while b"\n" in self.buffer:
            line, _, rest = bytes(self.buffer).partition(b"\n")
            self.buffer[:] = rest
            replies += self.handle(line.rstrip(b"\r"))
        if len(self.buffer) > self.MAX_LINE:
            raise ProtocolError("request line too long")
        return bytes(replies)

    def handle(self, line: bytes) -> bytes:
        verb, _, args = line.partition(b" ")
        if verb == b"SET":
            key, sep, value = args.partition(b" ")
            if not key or not sep:
                return b"ERR usage: SET key value\n"
            self.store[key] = value
            return b"OK\n"
        if verb == b"GET":
            if args not in self.store:
                return b"NOT_FOUND\n"
            return b"VALUE " + self.store[args] + b"\n"
        if verb == b"QUIT":
            raise ProtocolError("client quit")
        return b"ERR unknown command\n"


# --------------------------------------------------------------------------
# The harness: two pairs, a tampering link, the application on top.

# Made once per process, at start: nothing to commit, nothing that expires.
CA = CertificateAuthority("fuzzing CA")
SERVER_CERT = CA.issue(["kv.example"])
SERVER_CONFIG = TLSConfig(cert=SERVER_CERT.cert_pem, key=SERVER_CERT.key_pem)
CLIENT_CONFIG = TLSConfig(ca=CA.cert_pem)


def session(requests: list[bytes], plan: TamperPlan, cuts: list[int]) -> None:
    """Run one connection and check the invariants."""
    server = SecurePair(SERVER_CONFIG, server_side=True)
    client = SecurePair(CLIENT_CONFIG, server_side=False, server_hostname="kv.example")
    link = TamperLink(client, server, plan, fixed_cuts(cuts) if cuts else whole)
    app = KVServer()
    sent = bytearray()  # what the client application wrote
    seen = bytearray()  # what the server application read
    replies = bytearray()  # what the server application wrote
    answered = bytearray()  # what the client application read
    app_failed = False

    for request in [*requests, None]:
        if request is not None and client.state.value in ("handshaking", "open"):
            # Documented: a connection that failed raises a typed error.
            with contextlib.suppress(SecurePairError):
                sent += request[: client.cleartext.write(request)]
        for _ in range(20):  # bounded: a quiet link ends the round early
            outcome = link.settle()
            data = server.cleartext.read()
            seen += data
            if data and not app_failed:
                try:
                    reply = app.receive(data)
                except ProtocolError:
                    app_failed = True  # documented: the app closes the connection
                    if server.state.value == "open":
                        server.close()
                    continue
                if reply and server.state.value in ("open", "peer_closed"):
                    replies += reply[: server.cleartext.write(reply)]
            answered += client.cleartext.read()
            if not data:
                break

    # 1. Only typed errors came out of the pairs (settle() catches those
    #    only: anything else would have propagated and failed the test).
    for error in outcome:
        assert error is None or isinstance(error, SecurePairError), error
    # 2. Tampering stops a connection; it never changes what arrives.
    assert sent.startswith(seen), (bytes(sent[:80]), bytes(seen[:80]))
    assert replies.startswith(answered), (bytes(replies[:80]), bytes(answered[:80]))
    # Without tampering, everything arrives and is answered.
    if not plan.tampers and not app_failed:
        assert seen == sent
        assert answered == replies


# --------------------------------------------------------------------------
# With hypothesis.

REQUESTS = st.lists(
    st.one_of(
        st.builds(
            lambda k, v: b"SET " + k + b" " + v + b"\n",
            st.binary(min_size=1, max_size=8).filter(lambda k: b" " not in k and b"\n" not in k),
            st.binary(max_size=32).filter(lambda v: b"\n" not in v),
        ),
        st.builds(lambda k: b"GET " + k + b"\n", st.binary(max_size=8)),
        st.binary(max_size=64),  # anything at all
    ),
    max_size=6,
)


def hypothesis_test(examples: int):  # type: ignore[no-untyped-def]
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        requests=REQUESTS,
        plan=sps.tamper_plans(max_tampers=2),
        cuts=st.lists(st.integers(1, 64), max_size=8),
    )
    def test_kv_over_tls(requests: list[bytes], plan: TamperPlan, cuts: list[int]) -> None:
        session(requests, plan, cuts)

    return test_kv_over_tls


# --------------------------------------------------------------------------
# With atheris (libFuzzer): the same session, driven by raw bytes.


VERBS = (b"SET ", b"GET ", b"QUIT", b"")


def atheris_one_input(data: bytes) -> None:
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    seed = fdp.ConsumeIntInRange(0, 2**16)
    tampering = fdp.ConsumeIntInRange(0, 3)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    # Requests separated by "|"; each one's first byte picks a verb, so the
    # fuzzer reaches every command without having to spell it.
    requests = []
    for raw in fdp.ConsumeBytes(fdp.remaining_bytes()).split(b"|"):
        verb = VERBS[raw[0] % len(VERBS)] if raw else b""
        requests.append(verb + raw[1:] + b"\n")
    plan = TamperPlan.random(seed, count=tampering) if tampering else TamperPlan()
    session(requests, plan, cuts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="hypothesis examples")
    parser.add_argument("--atheris", action="store_true", help="fuzz with atheris instead")
    args, rest = parser.parse_known_args()
    if args.atheris:
        import atheris

        # Coverage feedback from the application.  With the protocol in its
        # own module, write instead, at the top of the fuzzing script:
        #     with atheris.instrument_imports():
        #         import my_protocol
        for name in ("receive", "handle"):
            setattr(KVServer, name, atheris.instrument_func(getattr(KVServer, name)))
        atheris.Setup([sys.argv[0], *rest], atheris_one_input)
        atheris.Fuzz()
    else:
        hypothesis_test(args.examples)()
        print(f"{args.examples} hypothesis examples: invariants held")


if __name__ == "__main__":
    main()
