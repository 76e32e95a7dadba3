"""``securepair demo``: a TLS conversation between two pairs, narrated.

Needs no network, no files and no set-up: the CA and the server certificate
are made in memory, and the bytes travel through an in-memory link, so what
is shown is the engine itself.
"""

from __future__ import annotations

import argparse
import time

from .. import certgen
from ..config import TLSConfig
from ..events import CleartextAvailable, CloseNotifyReceived, HandshakeComplete, SessionTicket
from ..pair import SecurePair
from ..records import ContentType, scan


HELP = "run a TLS client and server against each other and show what happens"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``demo``."""
    parser.add_argument("--tls-version", choices=["TLSv1.2", "TLSv1.3"], default=None)


def run(args: argparse.Namespace) -> int:
    """Run ``securepair demo``."""
    return run_demo(max_version=args.tls_version)


def _describe_records(data: bytes) -> str:
    found = scan(data)
    kinds: dict[str, int] = {}
    for record in found.records:
        try:
            name = ContentType(record.content_type).name
        except ValueError:
            name = str(record.content_type)
        kinds[name] = kinds.get(name, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return f"{len(data)} bytes in {len(found.records)} records ({parts})"


def run_demo(max_version: str | None = None, out: object = None) -> int:
    """Run the demo, printing to stdout; returns 0."""
    started = time.perf_counter()
    ca = certgen.CertificateAuthority("securepair demo CA")
    leaf = ca.issue(["localhost", "127.0.0.1"])
    server_config = TLSConfig(cert=leaf.cert_pem, key=leaf.key_pem, alpn_protocols=["demo/1"])
    client_config = TLSConfig(ca=ca.cert_pem, alpn_protocols=["demo/1"], max_version=max_version)
    print("securepair demo: a client and a server SecurePair, joined by memory\n")
    client = SecurePair(client_config, server_side=False, server_hostname="localhost")
    server = SecurePair(server_config, server_side=True)
    client.cleartext.write(b"GET /hello\r\n")
    print("client  wrote 12 bytes of cleartext before the handshake (queued)")
    rounds = 0
    while True:
        moved = False
        for name, source, sink in (("client", client, server), ("server", server, client)):
            data = source.encrypted.read()
            if data:
                moved = True
                print(f"{name:7} -> {_describe_records(data)}")
                sink.encrypted.write(data)
        for name, pair in (("client", client), ("server", server)):
            for event in pair.events():
                if isinstance(event, HandshakeComplete):
                    print(
                        f"{name:7} handshake complete: {event.version}, {event.cipher}, "
                        f"ALPN {event.alpn_protocol}, authorized={event.authorized}"
                    )
                    if event.peer_certificate is not None:
                        cert = event.peer_certificate
                        print(
                            f"{'':7} peer certificate: subject {cert['subject']}, "
                            f"issuer {cert['issuer']}, {cert['subjectaltname']}, "
                            f"valid to {cert['valid_to']}"
                        )
                elif isinstance(event, CleartextAvailable):
                    data = pair.cleartext.read()
                    print(f"{name:7} read cleartext {data!r}")
                    if pair is server:
                        server.cleartext.write(b"200 hello over " + server.version.encode())
                        server.close()
                        print("server  replied and sent close_notify")
                elif isinstance(event, SessionTicket):
                    print(f"{name:7} got a session ticket (for resumption)")
                elif isinstance(event, CloseNotifyReceived):
                    print(f"{name:7} peer sent close_notify: clean close")
                    if pair is client:
                        client.close()
        rounds += 1
        if not moved or rounds > 20:
            break
    elapsed = time.perf_counter() - started
    print(
        f"\nclient state {client.state.value}, server state {server.state.value}; {elapsed:.2f} s"
    )
    return 0
