"""Handshake, data both ways and close_notify both ways, in memory.

Each scenario runs for TLS 1.2 and TLS 1.3 (the ``tls_version`` fixture),
whole, byte by byte and in seeded random pieces (``chunking``), and under
hypothesis-chosen cuts; nothing here may depend on how the network split the
bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import re
import sys
import threading
import weakref
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st

from securepair import PairState, SecurePair, TLSConfig
from securepair.errors import (
    CertificateVerificationError,
    ConfigError,
    HandshakeNotCompleteError,
    TLSError,
)
from securepair.events import (
    CleartextAvailable,
    CloseNotifyReceived,
    HandshakeComplete,
    SessionTicket,
)
from securepair.records import parse_client_hello
from securepair.testing.link import Chunking, Link, byte_by_byte, fixed_cuts

from .fixtures_engine import (
    DEFAULT_HOSTNAME,
    Certs,
    drain,
    examples,
    feed,
    of_type,
    payload,
    transfer,
)

#: Sizes sent each way: one byte, a partial record, exactly one full record,
#: one byte over, several records, 1 MiB (the default buffer limit).
SIZES = [1, 100, 16384, 16385, 100_000, 1 << 20]
#: Byte by byte costs a Python call per byte; these still cross records.
SMALL_SIZES = [1, 16385]

NODE_TIME = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT$")


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def converse(
    make_pair_link: Any,
    tls_version: str,
    sizes: list[int],
    chunking: Chunking,
    *,
    client_first_close: bool = True,
    **kwargs: Any,
) -> tuple[SecurePair, SecurePair]:
    """Handshake, ``sizes`` each way, close both ways; assert every step."""
    client, server, link = make_pair_link(chunking=chunking, **kwargs)
    assert client.state is PairState.HANDSHAKING
    assert server.state is PairState.HANDSHAKING
    link.handshake()
    assert client.state is PairState.OPEN
    assert server.state is PairState.OPEN

    client_events = drain(client)
    server_events = drain(server)
    (hello,) = of_type(client_events, HandshakeComplete)
    assert client_events[0] is hello, "HandshakeComplete comes first"
    assert hello.version == client.version == tls_version
    assert hello.cipher == client.cipher
    assert hello.authorized is True and client.authorized is True
    assert hello.authorization_error is None
    assert hello.server_name == DEFAULT_HOSTNAME
    assert hello.session_reused is False
    assert hello.peer_certificate is not None
    (server_hello,) = of_type(server_events, HandshakeComplete)
    assert server_hello.version == server.version == tls_version
    assert server_hello.cipher == client.cipher
    assert server_hello.server_name == DEFAULT_HOSTNAME
    # No client certificate was asked for: nothing to authorize.
    assert server_hello.peer_certificate is None
    assert server.authorized is False
    assert server.peer_certificate() is None

    # The event announces data, and how much, before it is read.
    for sender, receiver in ((client, server), (server, client)):
        assert sender.cleartext.write(b"hello") == 5
        link.pump()
        assert of_type(drain(receiver), CleartextAvailable) == [CleartextAvailable(nbytes=5)]
        assert receiver.cleartext.read() == b"hello"

    for index, size in enumerate(sizes):
        up = payload(size, seed=index)
        assert transfer(link, client, up) == up
        down = payload(size, seed=index + 1000)
        assert transfer(link, server, down) == down

    first, second = (client, server) if client_first_close else (server, client)
    first.close()
    assert first.state is PairState.CLOSING
    link.pump()
    assert second.state is PairState.PEER_CLOSED
    assert of_type(drain(second), CloseNotifyReceived)
    assert not of_type(drain(first), CloseNotifyReceived)
    second.close()
    link.pump()
    assert first.state is PairState.CLOSED
    assert second.state is PairState.CLOSED
    assert of_type(drain(first), CloseNotifyReceived)
    # Every byte sent reached TLS; nothing was left over.
    for pair, log in ((client, link.server_to_client), (server, link.client_to_server)):
        assert pair.bytes_received == len(log)
        assert pair.trailing_data == b""
        assert pair.encrypted.pending == 0
        assert pair.cleartext.pending == 0
    return client, server


def sizes_for(chunking: Chunking) -> list[int]:
    return SMALL_SIZES if chunking is byte_by_byte else SIZES


def test_conversation(make_pair_link: Any, tls_version: str, chunking: Chunking) -> None:
    converse(make_pair_link, tls_version, sizes_for(chunking), chunking)


def test_conversation_server_closes_first(
    make_pair_link: Any, tls_version: str, chunking: Chunking
) -> None:
    converse(make_pair_link, tls_version, [1, 20000], chunking, client_first_close=False)


@pytest.mark.parametrize("size", SIZES)
def test_each_size_in_one_write(make_pair_link: Any, size: int) -> None:
    """One cleartext.write() of the whole payload: it is taken at once
    (the default limit is 1 MiB) and arrives intact."""
    client, server, link = make_pair_link()
    link.handshake()
    data = payload(size)
    assert client.cleartext.write(data) == size
    link.pump()
    assert server.cleartext.read() == data
    assert server.cleartext.write(data) == size
    link.pump()
    got = bytearray()
    while chunk := client.cleartext.read(5000):
        assert len(chunk) <= 5000
        got += chunk
    assert got == data


@examples(dev=40)
@given(cuts=st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_conversation_any_cuts(make_pair_link: Any, tls_version: str, cuts: list[int]) -> None:
    converse(make_pair_link, tls_version, [1, 5000], fixed_cuts(cuts))


@examples(dev=20)
@given(
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    close_first=st.booleans(),
)
def test_client_certificate_any_cuts(
    make_pair_link: Any, certs: Certs, tls_version: str, cuts: list[int], close_first: bool
) -> None:
    client, server, link = make_pair_link(
        chunking=fixed_cuts(cuts),
        client_opts={"cert": certs.client.cert, "key": certs.client.key},
        server_opts={"request_cert": True, "ca": certs.ca_pem},
    )
    link.handshake()
    assert server.authorized is True
    assert server.peer_certificate_der() == certs.client.leaf_der
    assert transfer(link, client, b"ping") == b"ping"
    assert transfer(link, server, b"pong") == b"pong"
    (client if close_first else server).close()
    link.pump()
    (server if close_first else client).close()
    link.pump()
    assert client.state is server.state is PairState.CLOSED


# --------------------------------------------------------------------------
# Certificates and key types.


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_key_types(
    make_pair_link: Any, certs: Certs, tls_version: str, chunking: Chunking, key_type: str
) -> None:
    identity = getattr(certs, key_type)
    client, server, link = make_pair_link(chunking=chunking, server_opts={"identity": identity})
    link.handshake()
    peer = client.peer_certificate()
    assert peer is not None
    assert peer["raw"] == identity.leaf_der
    if key_type == "rsa":
        assert peer["bits"] == 2048
        assert "modulus" in peer and "asn1Curve" not in peer
    else:
        assert peer["asn1Curve"] == "prime256v1" and peer["nistCurve"] == "P-256"
        assert "modulus" not in peer
    if tls_version == "TLSv1.2":
        # TLS 1.2 suites name the key type they authenticate with.
        assert ("ECDSA" in client.cipher) == (key_type == "ecdsa")
        assert ("RSA" in client.cipher) == (key_type == "rsa")
    assert transfer(link, client, b"x" * 20000) == b"x" * 20000
    assert transfer(link, server, b"y" * 20000) == b"y" * 20000
    client.close()
    server.close()
    link.pump()
    assert client.state is server.state is PairState.CLOSED


def test_client_certificate(
    make_pair_link: Any, certs: Certs, tls_version: str, chunking: Chunking
) -> None:
    client, server, link = make_pair_link(
        chunking=chunking,
        client_opts={"cert": certs.client.cert, "key": certs.client.key},
        server_opts={"request_cert": True, "ca": certs.ca_pem},
    )
    link.handshake()
    (event,) = of_type(drain(server), HandshakeComplete)
    assert event.authorized is True
    assert event.authorization_error is None
    assert server.authorized is True
    assert server.authorization_error is None
    assert client.authorized is True

    leaf = certs.client.leaf
    der = certs.client.leaf_der
    cert = server.peer_certificate()
    assert cert is not None
    assert cert == event.peer_certificate
    assert cert["subject"]["CN"] == "client.example.org"
    assert cert["subject"]["O"] == "Client"
    ca_subject = certs.ca.cert_pem.bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_subject)
    ca_cn = ca_cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
    assert cert["issuer"]["O"] == ca_cn
    assert cert["subjectaltname"] == "DNS:client.example.org"
    assert NODE_TIME.match(cert["valid_from"]), cert["valid_from"]
    assert NODE_TIME.match(cert["valid_to"]), cert["valid_to"]
    assert cert["valid_to"].endswith(f"{leaf.not_valid_after_utc.year} GMT")
    serial = f"{leaf.serial_number:X}"
    assert cert["serialNumber"] == (serial if len(serial) % 2 == 0 else "0" + serial)
    assert cert["fingerprint"] == colon_hex(leaf.fingerprint(hashes.SHA1()))
    assert cert["fingerprint256"] == colon_hex(leaf.fingerprint(hashes.SHA256()))
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", cert["fingerprint256"])
    assert cert["raw"] == der
    assert server.peer_certificate_der() == der

    # And the other way: the client sees the server's certificate.
    server_cert = client.peer_certificate()
    assert server_cert is not None
    assert server_cert["raw"] == certs.ecdsa.leaf_der
    assert server_cert["subjectaltname"] == "DNS:example.com, DNS:localhost"

    assert transfer(link, client, b"hello") == b"hello"
    assert transfer(link, server, b"world") == b"world"


def test_client_certificate_missing(make_pair_link: Any, certs: Certs, tls_version: str) -> None:
    """request_cert with a client that has none: a typed error on the
    server, its alert flushed first, and the client learns why."""
    from securepair.errors import TLSAlertReceivedError, TLSError

    client, server, _link = make_pair_link(server_opts={"request_cert": True, "ca": certs.ca_pem})
    with pytest.raises(TLSError) as caught:
        for _ in range(10):
            feed(server, client.encrypted.read())
            feed(client, server.encrypted.read())
    error = caught.value
    assert server.state is PairState.ERROR
    assert error.alert == (
        "certificate_required" if tls_version == "TLSv1.3" else "handshake_failure"
    )
    assert error.reason
    alert = server.encrypted.read()
    assert alert
    with pytest.raises(TLSAlertReceivedError) as received:
        feed(client, alert)
    assert received.value.alert == error.alert


# --------------------------------------------------------------------------
# ALPN and SNI.


@pytest.mark.parametrize(
    ("client_alpn", "server_alpn", "expected"),
    [
        (["h2", "http/1.1"], ["http/1.1", "h2"], "http/1.1"),
        (["h2", "http/1.1"], ["h2"], "h2"),
        (["h2"], None, None),
        (None, ["h2"], None),
        (["imap"], ["h2", "http/1.1"], None),
    ],
)
def test_alpn(
    make_pair_link: Any,
    chunking: Chunking,
    client_alpn: list[str] | None,
    server_alpn: list[str] | None,
    expected: str | None,
) -> None:
    client, server, link = make_pair_link(
        chunking=chunking,
        client_opts={"alpn_protocols": client_alpn},
        server_opts={"alpn_protocols": server_alpn},
    )
    hello = parse_client_hello(client.encrypted.read())
    assert tuple(hello.alpn_protocols) == tuple(client_alpn or ())
    # The ClientHello was read above for inspection: make the pair again.
    client, server, link = make_pair_link(
        chunking=chunking,
        client_opts={"alpn_protocols": client_alpn},
        server_opts={"alpn_protocols": server_alpn},
    )
    link.handshake()
    assert client.alpn_protocol == expected
    assert server.alpn_protocol == expected
    assert of_type(drain(client), HandshakeComplete)[0].alpn_protocol == expected
    assert of_type(drain(server), HandshakeComplete)[0].alpn_protocol == expected


@pytest.mark.parametrize("hostname", ["example.com", "localhost"])
def test_sni_server_name_both_sides(make_pair_link: Any, chunking: Chunking, hostname: str) -> None:
    client, server, link = make_pair_link(chunking=chunking, server_hostname=hostname)
    assert parse_client_hello(client.encrypted.read()).server_name == hostname
    client, server, link = make_pair_link(chunking=chunking, server_hostname=hostname)
    link.handshake()
    assert client.server_name == hostname
    assert server.server_name == hostname
    assert of_type(drain(server), HandshakeComplete)[0].server_name == hostname
    assert of_type(drain(client), HandshakeComplete)[0].server_name == hostname


def test_no_sni(make_pair_link: Any) -> None:
    """A client that names no host sends no SNI; the server reports None."""
    client, server, link = make_pair_link(
        client_opts={"check_hostname": False}, server_hostname=None
    )
    link.handshake()
    assert server.server_name is None
    assert client.server_name is None


def test_servername_option_is_the_default_hostname(make_pair_link: Any) -> None:
    client, server, link = make_pair_link(
        client_opts={"servername": "localhost"}, server_hostname=None
    )
    link.handshake()
    assert server.server_name == "localhost"
    assert client.authorized is True


def sni_server(make_config: Any, certs: Certs) -> Any:
    """A new server config for example.com / localhost that also serves
    api.example.net, exact.example.com and *.example.com (wildcard added
    first, to show exact names win whatever the order)."""
    alpn = ["sni-test"]
    server_config = make_config("server", fresh=True, identity=certs.ecdsa, alpn_protocols=alpn)
    for name, identity in (
        ("*.example.com", certs.wildcard),
        ("api.example.net", certs.other_domain),
        ("exact.example.com", certs.exact),
    ):
        # Each context brings its own options: ALPN is set on each.
        server_config.add_context(
            name, make_config("server", identity=identity, alpn_protocols=alpn)
        )
    return server_config


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("api.example.net", "other_domain"),
        ("API.Example.NET", "other_domain"),
        ("foo.example.com", "wildcard"),
        ("exact.example.com", "exact"),
        ("example.com", "ecdsa"),
        ("localhost", "ecdsa"),
    ],
)
def test_add_context(
    make_pair_link: Any,
    make_config: Any,
    certs: Certs,
    chunking: Chunking,
    hostname: str,
    expected: str,
) -> None:
    """The certificate is chosen from the SNI name before it is sent: the
    client sees (and verifies) the one for the name it asked for."""
    client, server, link = make_pair_link(
        server_config=sni_server(make_config, certs),
        server_hostname=hostname,
        chunking=chunking,
    )
    link.handshake()
    assert client.authorized is True
    assert client.peer_certificate_der() == getattr(certs, expected).leaf_der
    assert server.server_name.lower() == hostname.lower()
    assert transfer(link, client, b"hello") == b"hello"


def test_add_context_after_the_server_has_served(
    make_pair_link: Any, make_config: Any, certs: Certs
) -> None:
    """A route added once the server's context exists (it served a
    connection already) applies from the next handshake on."""
    server_config = make_config("server", fresh=True, identity=certs.ecdsa)
    client, _server, link = make_pair_link(
        {"check_hostname": False}, server_config=server_config, server_hostname="api.example.net"
    )
    link.handshake()
    assert client.peer_certificate_der() == certs.ecdsa.leaf_der
    server_config.add_context("api.example.net", make_config("server", identity=certs.other_domain))
    client, _server, link = make_pair_link(
        server_config=server_config, server_hostname="api.example.net"
    )
    link.handshake()
    assert client.authorized is True
    assert client.peer_certificate_der() == certs.other_domain.leaf_der


@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_alpn_chosen_by_a_routed_config(certs: Certs, backend: str) -> None:
    """The config SNI routes to selects ALPN, also where the server's own
    config offers none; both sides report what was agreed."""
    server_config = TLSConfig(**certs.ecdsa.options(), backend=backend)
    server_config.add_context(
        "api.example.net",
        TLSConfig(**certs.other_domain.options(), backend=backend, alpn_protocols=["h2"]),
    )
    client = SecurePair(
        TLSConfig(ca=certs.ca_pem, backend=backend, alpn_protocols=["h2", "http/1.1"]),
        server_side=False,
        server_hostname="api.example.net",
    )
    server = SecurePair(server_config, server_side=True)
    Link(client, server).handshake()
    assert client.authorized is True
    assert server.alpn_protocol == client.alpn_protocol == "h2"
    assert of_type(drain(server), HandshakeComplete)[0].alpn_protocol == "h2"


def test_a_route_cannot_change_client_verification(make_config: Any, certs: Certs) -> None:
    """OpenSSL keeps the verify mode a connection started with when SNI
    switches its context: a route that asks for client certificates would
    quietly not ask.  So such a route is refused when it is added."""
    server_config = make_config("server", fresh=True)
    strict = make_config("server", identity=certs.other_domain, request_cert=True, ca=certs.ca_pem)
    with pytest.raises(ConfigError, match=r"add_context: .*api\.example\.net.*request_cert=True"):
        server_config.add_context("api.example.net", strict)
    asking = make_config("server", fresh=True, request_cert=True, ca=certs.ca_pem)
    with pytest.raises(ConfigError, match="verifies clients differently"):
        asking.add_context("api.example.net", make_config("server", identity=certs.other_domain))


def test_a_route_that_verifies_alike_is_enforced(
    make_pair_link: Any, make_config: Any, certs: Certs, tls_version: str
) -> None:
    server_config = make_config("server", fresh=True, request_cert=True, ca=certs.ca_pem)
    server_config.add_context(
        "api.example.net",
        make_config("server", identity=certs.other_domain, request_cert=True, ca=certs.ca_pem),
    )
    client, server, link = make_pair_link(
        {"cert": certs.client.cert, "key": certs.client.key},
        server_config=server_config,
        server_hostname="api.example.net",
    )
    link.handshake()
    assert client.peer_certificate_der() == certs.other_domain.leaf_der
    assert server.peer_certificate_der() == certs.client.leaf_der
    # Without a certificate, the route refuses the client.
    client, server, _link = make_pair_link(
        server_config=server_config, server_hostname="api.example.net"
    )
    with pytest.raises(TLSError):
        for _ in range(10):
            feed(server, client.encrypted.read())
            feed(client, server.encrypted.read())
    assert server.state is PairState.ERROR


def test_sni_callback_cannot_change_client_verification(
    make_pair_link: Any, make_config: Any, certs: Certs
) -> None:
    strict = make_config("server", identity=certs.other_domain, request_cert=True, ca=certs.ca_pem)
    client, server, _ = make_pair_link(
        server_config=make_config("server", fresh=True, sni_callback=lambda name: strict),
        server_hostname="api.example.net",
    )
    with pytest.raises(TLSError, match="verifies clients differently") as caught:
        server.encrypted.write(client.encrypted.read())
    assert caught.value.alert == "internal_error"


def test_sni_callback_context_cannot_change_client_verification(
    make_pair_link: Any, make_config: Any, certs: Certs, backend: str
) -> None:
    """The same for a library context returned by the callback."""
    if backend == "stdlib":
        strict: Any = make_config(
            "server", identity=certs.other_domain, request_cert=True, ca=certs.ca_pem
        ).stdlib_context(server_side=True)
    else:
        strict = make_config(
            "server", identity=certs.other_domain, request_cert=True, ca=certs.ca_pem
        ).pyopenssl_context(server_side=True)
    client, server, _ = make_pair_link(
        server_config=make_config("server", fresh=True, sni_callback=lambda name: strict),
        server_hostname="api.example.net",
    )
    with pytest.raises(TLSError, match="OpenSSL keeps the verification") as caught:
        server.encrypted.write(client.encrypted.read())
    assert caught.value.alert == "internal_error"


def test_add_context_wildcard_matches_one_label(
    make_pair_link: Any, make_config: Any, certs: Certs
) -> None:
    """``*.example.com`` does not match ``a.b.example.com``: the default
    certificate is sent, and the client rejects it for that name."""
    client, server, _link = make_pair_link(
        server_config=sni_server(make_config, certs), server_hostname="a.b.example.com"
    )
    server.encrypted.write(client.encrypted.read())
    with pytest.raises(CertificateVerificationError) as caught:
        feed(client, server.encrypted.read())
    assert caught.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"


def test_sni_callback(
    make_pair_link: Any, make_config: Any, certs: Certs, tls_version: str, chunking: Chunking
) -> None:
    calls: list[str] = []
    wildcard = make_config("server", identity=certs.wildcard)

    def choose(name: str) -> Any:
        calls.append(name)
        return wildcard if name.endswith(".example.com") else None

    server_config = make_config("server", sni_callback=choose)
    client, server, link = make_pair_link(
        server_config=server_config, server_hostname="www.example.com", chunking=chunking
    )
    link.handshake()
    assert calls == ["www.example.com"]
    assert client.peer_certificate_der() == certs.wildcard.leaf_der
    assert client.authorized is True
    assert server.server_name == "www.example.com"
    assert transfer(link, server, b"hi") == b"hi"

    # None keeps the default certificate.
    client, server, link = make_pair_link(server_config=server_config, server_hostname="localhost")
    link.handshake()
    assert calls[-1] == "localhost"
    assert client.peer_certificate_der() == certs.ecdsa.leaf_der


def test_sni_callback_returns_ssl_context(
    make_pair_link: Any, make_config: Any, certs: Certs, backend: str
) -> None:
    context = make_config("server", identity=certs.exact).stdlib_context(server_side=True)
    server_config = make_config("server", sni_callback=lambda name: context)
    client, _server, link = make_pair_link(
        server_config=server_config, server_hostname="exact.example.com"
    )
    if backend == "pyopenssl":
        # A pyOpenSSL server cannot switch to an ssl.SSLContext; it says so.
        with pytest.raises(TLSError, match="return a TLSConfig"):
            link.handshake()
        return
    link.handshake()
    assert client.peer_certificate_der() == certs.exact.leaf_der


# --------------------------------------------------------------------------
# Before and at the start of the handshake.


def test_client_hello_readable_at_once(make_pair_link: Any, tls_version: str) -> None:
    client, server, _ = make_pair_link(client_opts={"alpn_protocols": ["h2"]})
    assert client.encrypted.pending > 0
    data = client.encrypted.read()
    assert client.encrypted.pending == 0
    assert data[:2] == b"\x16\x03"
    hello = parse_client_hello(data)
    assert hello.server_name == DEFAULT_HOSTNAME
    assert hello.alpn_protocols == ("h2",)
    assert hello.is_tls13 == (tls_version == "TLSv1.3")
    assert hello.end == len(data)
    # A server says nothing until it hears from the client.
    assert server.encrypted.pending == 0
    assert server.encrypted.read() == b""


def test_client_hello_read_in_pieces(make_pair_link: Any) -> None:
    client, server, link = make_pair_link()
    total = client.encrypted.pending
    pieces = []
    while piece := client.encrypted.read(7):
        assert len(piece) <= 7
        pieces.append(piece)
    assert sum(map(len, pieces)) == total
    feed(server, b"".join(pieces))
    link.handshake()


def test_cleartext_before_handshake_is_sent_after(make_pair_link: Any, chunking: Chunking) -> None:
    client, server, link = make_pair_link(chunking=chunking)
    secret = b"early-secret-" * 100
    assert client.cleartext.write(secret) == len(secret)
    assert client.cleartext.write(b"|second") == 7
    assert server.cleartext.write(b"server-early") == 12
    # Nothing is sent in the clear: only the ClientHello so far.
    hello = client.encrypted.read()
    assert parse_client_hello(hello).end == len(hello)
    assert b"early-secret" not in hello
    feed(server, hello, chunking)
    link.pump()
    assert client.handshake_complete and server.handshake_complete
    assert server.cleartext.read() == secret + b"|second"
    assert client.cleartext.read() == b"server-early"
    assert b"early-secret" not in link.client_to_server
    assert b"server-early" not in link.server_to_client


def test_cleartext_write_empty_is_a_no_op(make_pair_link: Any) -> None:
    """``write(b"")`` never reaches OpenSSL (where it would mean EOF)."""
    client, _server, link = make_pair_link()
    assert client.cleartext.write(b"") == 0
    link.handshake()
    assert client.cleartext.write(b"") == 0
    assert client.encrypted.pending == 0
    assert transfer(link, client, b"after") == b"after"


@pytest.mark.parametrize(
    "attribute",
    [
        "version",
        "cipher",
        "alpn_protocol",
        "server_name",
        "authorized",
        "authorization_error",
        "session",
        "session_reused",
        "handshake_event",
    ],
)
@pytest.mark.parametrize("role", ["client", "server"])
def test_details_before_handshake(make_pair_link: Any, attribute: str, role: str) -> None:
    client, server, link = make_pair_link()
    pair = client if role == "client" else server
    with pytest.raises(HandshakeNotCompleteError, match="before the TLS handshake"):
        getattr(pair, attribute)
    # Halfway through is still before.
    server.encrypted.write(client.encrypted.read())
    with pytest.raises(HandshakeNotCompleteError):
        getattr(pair, attribute)
    link.handshake()
    getattr(pair, attribute)


@pytest.mark.parametrize("method", ["peer_certificate", "peer_certificate_der", "cipher_info"])
def test_detail_methods_before_handshake(make_pair_link: Any, method: str) -> None:
    client, server, link = make_pair_link()
    for pair in (client, server):
        with pytest.raises(HandshakeNotCompleteError):
            getattr(pair, method)()
    link.handshake()
    assert getattr(client, method)() is not None


def test_handshake_event_is_repeated(make_pair_link: Any, tls_version: str) -> None:
    client, _server, link = make_pair_link()
    link.handshake()
    (event,) = of_type(drain(client), HandshakeComplete)
    assert client.handshake_event == event
    assert client.cipher_info()[0] == event.cipher
    assert client.cipher_info()[2] >= 128


def test_handshake_event_is_an_ordinary_frozen_event(make_pair_link: Any) -> None:
    """The engine makes the event without the dataclass's __init__ (and on
    pyOpenSSL reads its fields only when one is first asked for); it is the
    same event, with every field, frozen, and copies and pickles as one."""
    client, server, link = make_pair_link()
    link.handshake()
    for pair in (client, server):
        (event,) = of_type(drain(pair), HandshakeComplete)
        # Before any field is read: a copy and a pickle carry the fields.
        copied, pickled = copy.copy(event), pickle.loads(pickle.dumps(event))
        assert "_loader" not in vars(copied) and "_loader" not in vars(pickled)
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        assert copied == pickled == event
        assert fields["version"] == pair.version
        assert fields["cipher"] == pair.cipher
        with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
            event.nonsense  # type: ignore[attr-defined]  # noqa: B018
        assert set(fields) == set(vars(event)) - {"peer_certificate"}
        assert HandshakeComplete(**fields) == event
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.version = "SSLv3"  # type: ignore[misc]


def test_handshake_event_needs_no_connection(make_pair_link: Any, certs: Certs) -> None:
    """An event read after its pair is gone still has every field (on
    pyOpenSSL the certificate is encoded then), and keeps no connection
    alive meanwhile."""
    client, _server, link = make_pair_link()
    link.handshake()
    (event,) = of_type(drain(client), HandshakeComplete)
    connection = weakref.ref(client._conn)
    del client, _server, link
    gc.collect()
    assert connection() is None
    assert event.peer_certificate_der == certs.ecdsa.leaf_der
    assert event.version in ("TLSv1.2", "TLSv1.3")
    assert event.authorized is True


def test_handshake_event_read_from_many_threads(make_pair_link: Any, certs: Certs) -> None:
    """Threads reading one new event all see its fields (no AttributeError
    while another thread fills them)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            client, _server, link = make_pair_link()
            link.handshake()
            (event,) = of_type(drain(client), HandshakeComplete)
            seen: list[object] = []
            start = threading.Barrier(8)

            def read(
                event: HandshakeComplete = event,
                seen: list[object] = seen,
                start: threading.Barrier = start,
            ) -> None:
                start.wait()
                try:
                    seen.append(event.peer_certificate_der)
                except AttributeError as exc:
                    seen.append(exc)

            threads = [threading.Thread(target=read) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert seen == [certs.ecdsa.leaf_der] * 8
    finally:
        sys.setswitchinterval(old)


# --------------------------------------------------------------------------
# initial_data: bytes read before the pair existed (STARTTLS).


def test_server_initial_data_completes_handshake(
    make_pair_link: Any, tls_version: str, chunking: Chunking
) -> None:
    client, _, _ = make_pair_link()
    hello = client.encrypted.read()
    for split in (len(hello), 1, len(hello) // 2):
        client, _, _ = make_pair_link()
        hello = client.encrypted.read()
        _, server, link = make_pair_link(server_initial_data=hello[:split])
        link.client = client
        link.chunking = chunking
        feed(server, hello[split:], chunking)
        assert server.bytes_received == len(hello)
        link.handshake()
        assert server.version == tls_version
        assert transfer(link, client, b"after starttls") == b"after starttls"
        assert transfer(link, server, b"reply") == b"reply"


def outcome(make: Any) -> tuple[Any, ...]:
    """What making a pair and feeding it led to, comparable across runs."""
    try:
        pair = make()
    except Exception as exc:  # compared, not swallowed
        return ("error", type(exc), str(exc))
    events = [type(e) for e in drain(pair)]
    return (
        "ok",
        pair.state,
        events,
        pair.bytes_received,
        pair.trailing_data,
        pair.encrypted.pending > 0,
        pair.handshake_complete,
    )


def _alert(description: int) -> bytes:
    return bytes([21, 3, 3, 0, 2, 2, description])


@pytest.mark.parametrize(
    ("role", "data"),
    [
        ("server", "client_hello"),
        ("server", "client_hello_part"),
        ("server", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("server", b"\x16\x03"),
        ("server", _alert(40)),
        ("client", b"220 mail.example.com ESMTP ready\r\n"),
        ("client", _alert(40)),
        ("client", _alert(70)),
        ("client", b"\x16\x03\x03\x00"),
    ],
)
def test_initial_data_is_like_a_first_write(
    make_pair_link: Any, make_config: Any, role: str, data: Any
) -> None:
    """initial_data=X and encrypted.write(X) right after construction end
    the same way: same error, or same state, events and accounting."""
    if isinstance(data, str):
        client, _, _ = make_pair_link()
        hello = client.encrypted.read()
        data = hello if data == "client_hello" else hello[:40]
    server_side = role == "server"
    config = make_config(role)
    hostname = None if server_side else DEFAULT_HOSTNAME

    def with_initial_data() -> SecurePair:
        return SecurePair(
            config, server_side=server_side, server_hostname=hostname, initial_data=data
        )

    def with_write() -> SecurePair:
        pair = SecurePair(config, server_side=server_side, server_hostname=hostname)
        pair.encrypted.write(data)
        return pair

    first = outcome(with_initial_data)
    assert first == outcome(with_write)
    if role == "server" and data[:1] == b"\x16" and len(data) > 100:
        assert first[0] == "ok" and first[5], "the server answered the ClientHello"


def test_initial_data_accepts_any_buffer(make_pair_link: Any) -> None:
    client, _, _ = make_pair_link()
    hello = client.encrypted.read()
    for kind in (bytes, bytearray, memoryview):
        client, _, _ = make_pair_link()
        hello = client.encrypted.read()
        _, _server, link = make_pair_link(server_initial_data=kind(hello))
        link.client = client
        link.handshake()


def test_session_ticket_and_handshake_order(make_pair_link: Any) -> None:
    """Events come in the order things happened."""
    client, server, link = make_pair_link()
    client.cleartext.write(b"queued")
    server.cleartext.write(b"queued too")
    link.pump()
    events = drain(client)
    kinds = [type(e) for e in events]
    assert kinds[0] is HandshakeComplete
    assert SessionTicket in kinds
    assert kinds.index(CleartextAvailable) > 0
    assert client.cleartext.read() == b"queued too"
    assert server.cleartext.read() == b"queued"


def test_sni_callback_that_raises(make_pair_link: Any, make_config: Any, backend: str) -> None:
    """An exception in the application's callback fails the handshake with a
    fatal internal_error alert on both backends, and the error says what the
    callback raised."""
    expected = "internal_error"

    def broken(name: str) -> Any:
        raise RuntimeError("no certificate store today")

    client, server, _ = make_pair_link(server_config=make_config("server", sni_callback=broken))
    with pytest.raises(TLSError, match="no certificate store today") as caught:
        server.encrypted.write(client.encrypted.read())
    assert caught.value.alert == expected
    from securepair.errors import TLSAlertReceivedError

    with pytest.raises(TLSAlertReceivedError) as received:
        feed(client, server.encrypted.read())
    assert received.value.alert == expected


@examples(dev=20)
@given(cuts=st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_handshake_features_any_cuts(
    make_pair_link: Any, make_config: Any, certs: Certs, tls_version: str, cuts: list[int]
) -> None:
    """SNI routing, ALPN and a client certificate in one handshake, cut
    anywhere."""
    server_config = sni_server(make_config, certs)
    client, server, link = make_pair_link(
        chunking=fixed_cuts(cuts),
        server_config=server_config,
        server_hostname="exact.example.com",
        client_opts={
            "alpn_protocols": ["h2", "sni-test"],
            "cert": certs.client.cert,
            "key": certs.client.key,
        },
    )
    link.handshake()
    assert client.peer_certificate_der() == certs.exact.leaf_der
    assert client.alpn_protocol == server.alpn_protocol == "sni-test"
    assert server.server_name == "exact.example.com"
    assert client.version == tls_version
    assert transfer(link, client, b"q" * 3000) == b"q" * 3000
    client.close()
    server.close()
    link.pump()
    assert client.state is server.state is PairState.CLOSED


# --------------------------------------------------------------------------
# The API's small print.


def test_next_event_and_need_data(make_pair_link: Any) -> None:
    from securepair import NEED_DATA

    client, server, link = make_pair_link()
    assert server.next_event() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"
    link.handshake()
    assert isinstance(server.next_event(), HandshakeComplete)
    assert server.next_event() is NEED_DATA
    client.cleartext.write(b"abc")
    link.pump()
    assert server.next_event() == CleartextAvailable(nbytes=3)
    assert server.next_event() is NEED_DATA
    assert "server" in repr(server) and "open" in repr(server)


def test_readinto(make_pair_link: Any) -> None:
    client, server, link = make_pair_link()
    link.handshake()
    data = payload(50000)
    transfer_buffer = bytearray(7000)
    client.cleartext.write(data)
    link.pump()
    got = bytearray()
    while count := server.cleartext.readinto(transfer_buffer):
        assert count <= 7000
        assert len(transfer_buffer) == 7000  # filled in place, never resized
        got += transfer_buffer[:count]
    assert got == data
    assert server.cleartext.readinto(bytearray(10)) == 0


@pytest.mark.parametrize("kind", ["memoryview", "array", "empty"])
def test_readinto_any_writable_buffer(make_pair_link: Any, kind: str) -> None:
    """Counts are bytes, whatever the buffer's item size."""
    import array

    client, server, link = make_pair_link()
    link.handshake()
    client.cleartext.write(b"0123456789")
    link.pump()
    if kind == "empty":
        assert server.cleartext.readinto(bytearray()) == 0
        assert server.cleartext.read() == b"0123456789"
        return
    backing = bytearray(6)
    target: Any = memoryview(backing) if kind == "memoryview" else array.array("H", [0, 0, 0])
    assert server.cleartext.readinto(target) == 6
    assert bytes(target) == b"012345"
    assert server.cleartext.read() == b"6789"


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array"])
def test_write_accepts_any_buffer(make_pair_link: Any, kind: str) -> None:
    """Counts are bytes, whatever the buffer's item size; a short write
    takes exactly the bytes it says it took."""
    import array

    from securepair.config import MIN_BUFFER_LIMIT
    from securepair.errors import BufferFullError

    opts = {"buffer_limit": MIN_BUFFER_LIMIT}
    client, server, link = make_pair_link(client_opts=opts, server_opts=opts)
    raw = payload(3 * MIN_BUFFER_LIMIT)

    def wrap(chunk: bytes) -> Any:
        if kind == "array":
            return array.array("H", chunk)
        return {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind](chunk)

    # Before the handshake (queued), then after it (encrypted at once).
    assert client.cleartext.write(wrap(raw[:1000])) == 1000
    link.handshake()
    sent = 1000
    received = bytearray(server.cleartext.read())
    while sent < len(raw):
        chunk = raw[sent : sent + 20000]
        try:
            taken = client.cleartext.write(wrap(chunk))
        except BufferFullError:
            taken = 0
        sent += taken
        if taken < len(chunk):
            link.pump()
            received += server.cleartext.read()
    link.pump()
    received += server.cleartext.read()
    assert received == raw
