"""Fixtures and helpers for the engine's in-memory tests (a pytest plugin).

Every pair these fixtures make runs once per protocol version
(``tls_version``) and once per backend (``backend``), so a behaviour that
holds for TLS 1.3 but breaks for TLS 1.2 cannot hide.  Certificates are made
at test time with trustme (one CA, RSA and ECDSA leaves, a client
certificate, an expired one, a not-yet-valid one, one from an unknown CA) and
``cryptography`` (a self-signed one), so nothing expires in the repository.

``make_pair_link`` is the one way tests get a connected client and server::

    client, server, link = make_pair_link(server_opts={"alpn_protocols": ["h2"]})
    link.handshake()

The helpers below it (``transfer``, ``feed``, ``close_both`` ...) play the
driver a real application would write, so a test reads as the scenario it
checks.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import settings

from securepair import SecurePair, TLSConfig
from securepair.errors import SecurePairError
from securepair.events import Event
from securepair.testing.link import Chunking, Link, byte_by_byte, random_chunks, whole

#: Protocol versions every pair runs with.
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")

#: Backends every pair runs with.  Issue 4 adds "pyopenssl" here.
ENGINE_BACKENDS = ["stdlib", "pyopenssl"]

#: The host names the default server certificates cover.
SERVER_NAMES = ("example.com", "localhost")
#: What clients ask for (and verify) unless a test says otherwise.
DEFAULT_HOSTNAME = "example.com"

#: A seed per random chunking, so a failure replays exactly.
RANDOM_CHUNKING_SEED = 20240917


# --------------------------------------------------------------------------
# Hypothesis budgets.


def examples(dev: int) -> settings:
    """Settings for a test worth ``dev`` examples under the dev profile.

    Scales with the loaded profile (dev 200, ci 1000, long 100 000 examples
    by default), so ``HYPOTHESIS_PROFILE=long`` still soaks these tests
    while a CI run of the engine's suite stays near a minute and a half.
    """
    base = settings.default.max_examples
    return settings(max_examples=max(3, dev * base // 200))


# --------------------------------------------------------------------------
# Certificates.


@dataclass(frozen=True, repr=False)
class Identity:
    """A certificate chain (leaf first) and its private key, both PEM."""

    cert: bytes
    key: bytes

    @property
    def leaf_der(self) -> bytes:
        """The leaf certificate, DER (what the peer sees)."""
        leaf = x509.load_pem_x509_certificates(self.cert)[0]
        return leaf.public_bytes(serialization.Encoding.DER)

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert)[0]

    def options(self) -> dict[str, Any]:
        """``cert`` and ``key`` options for :class:`TLSConfig`."""
        return {"cert": self.cert, "key": self.key}

    def __repr__(self) -> str:
        names = self.leaf.subject.rfc4514_string() or "(empty subject)"
        return f"<Identity {names}>"


def _identity(leaf: trustme.LeafCert) -> Identity:
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return Identity(cert=chain, key=leaf.private_key_pem.bytes())


def self_signed_identity(hostname: str) -> Identity:
    """A certificate that signs itself (DEPTH_ZERO_SELF_SIGNED_CERT)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True, repr=False)
class Certs:
    """Every certificate the engine tests use, made once per session."""

    ca: trustme.CA
    #: PEM of the CA every client trusts.
    ca_pem: bytes
    #: Server leaves for SERVER_NAMES, by key type.
    rsa: Identity
    ecdsa: Identity
    #: A client certificate (for request_cert), issued by the same CA.
    client: Identity
    #: Valid for example.com, but expired yesterday.
    expired: Identity
    #: Valid for example.com, from tomorrow.
    not_yet_valid: Identity
    #: Self-signed for example.com.
    self_signed: Identity
    #: Valid for example.com, from a CA the clients do not trust.
    unknown_ca: Identity
    #: For SNI tests: a wildcard, an exact name under it, another domain.
    wildcard: Identity
    exact: Identity
    other_domain: Identity

    def __repr__(self) -> str:
        return "<Certs for the engine tests>"


@pytest.fixture(scope="session")
def certs() -> Certs:
    """Certificates for the whole session (trustme CA, leaves, odd cases)."""
    ca = trustme.CA()
    stranger = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    return Certs(
        ca=ca,
        ca_pem=ca.cert_pem.bytes(),
        rsa=_identity(ca.issue_cert(*SERVER_NAMES, key_type=trustme.KeyType.RSA)),
        ecdsa=_identity(ca.issue_cert(*SERVER_NAMES, key_type=trustme.KeyType.ECDSA)),
        client=_identity(
            ca.issue_cert(
                "client.example.org", common_name="client.example.org", organization_name="Client"
            )
        ),
        expired=_identity(
            ca.issue_cert(DEFAULT_HOSTNAME, not_before=now - 10 * day, not_after=now - day)
        ),
        not_yet_valid=_identity(
            ca.issue_cert(DEFAULT_HOSTNAME, not_before=now + day, not_after=now + 10 * day)
        ),
        self_signed=self_signed_identity(DEFAULT_HOSTNAME),
        unknown_ca=_identity(stranger.issue_cert(DEFAULT_HOSTNAME)),
        wildcard=_identity(ca.issue_cert("*.example.com")),
        exact=_identity(ca.issue_cert("exact.example.com")),
        other_domain=_identity(ca.issue_cert("api.example.net")),
    )


# --------------------------------------------------------------------------
# Parameters every pair runs with.


@pytest.fixture(scope="session", params=TLS_VERSIONS)
def tls_version(request: pytest.FixtureRequest) -> str:
    """Each protocol version in turn; every pair made here is pinned to it."""
    return str(request.param)


@pytest.fixture(scope="session", params=ENGINE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, passed as ``TLSConfig(backend=...)``."""
    return str(request.param)


CHUNKINGS: dict[str, Callable[[], Chunking]] = {
    "whole": lambda: whole,
    "byte_by_byte": lambda: byte_by_byte,
    "random_chunks": lambda: random_chunks(RANDOM_CHUNKING_SEED),
}


@pytest.fixture(params=list(CHUNKINGS))
def chunking(request: pytest.FixtureRequest) -> Chunking:
    """How the link cuts the byte stream: whole, byte by byte, random pieces
    (seeded, fresh for each test so a failure replays)."""
    return CHUNKINGS[request.param]()


# --------------------------------------------------------------------------
# Configs and pairs.

ConfigFactory = Callable[..., TLSConfig]


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


@pytest.fixture(scope="session")
def make_config(certs: Certs, tls_version: str, backend: str) -> ConfigFactory:
    """``make_config(role, **options)``: a :class:`TLSConfig` for ``role``
    (``"client"`` or ``"server"``) pinned to ``tls_version`` and ``backend``.

    Defaults: servers use the ECDSA leaf, clients trust the test CA.  Pass
    ``identity=certs.rsa`` (or any :class:`Identity`) for another
    certificate.  Configs with hashable options are cached, so pairs made
    again with the same options share backend contexts (and sessions) and
    hypothesis examples do not pay for building them; ``fresh=True`` makes
    a new one.
    """
    cache: dict[Any, TLSConfig] = {}

    def factory(role: str, *, fresh: bool = False, **options: Any) -> TLSConfig:
        """``fresh=True``: a new config, not a cached one (for a test that
        changes it, with ``add_context`` say)."""
        assert role in ("client", "server"), role
        opts: dict[str, Any] = {
            "backend": backend,
            "min_version": tls_version,
            "max_version": tls_version,
        }
        identity = options.pop("identity", certs.ecdsa if role == "server" else None)
        if identity is not None:
            opts.update(identity.options())
        if role == "client":
            opts["ca"] = certs.ca_pem
        opts.update(options)
        try:
            key: Any = None if fresh else (role, _freeze(opts))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in cache:
            return cache[key]
        config = TLSConfig(**opts)
        if key is not None:
            cache[key] = config
        return config

    return factory


PairLinkFactory = Callable[..., tuple[SecurePair, SecurePair, Link]]


@pytest.fixture(scope="session")
def make_pair_link(make_config: ConfigFactory) -> PairLinkFactory:
    """``make_pair_link(client_opts=..., server_opts=...)`` -> ``(client,
    server, link)``, not yet connected (``link.handshake()`` connects).

    Keywords: ``client_config`` / ``server_config`` (a ready config or
    ``ssl.SSLContext`` instead of options), ``chunking`` (the link's),
    ``server_hostname`` (default ``"example.com"``), ``session`` (resume),
    ``client_initial_data`` / ``server_initial_data``.
    """

    def factory(
        client_opts: dict[str, Any] | None = None,
        server_opts: dict[str, Any] | None = None,
        *,
        client_config: Any = None,
        server_config: Any = None,
        chunking: Chunking = whole,
        server_hostname: str | None = DEFAULT_HOSTNAME,
        session: Any = None,
        client_initial_data: bytes = b"",
        server_initial_data: bytes = b"",
    ) -> tuple[SecurePair, SecurePair, Link]:
        if client_config is None:
            client_config = make_config("client", **(client_opts or {}))
        if server_config is None:
            server_config = make_config("server", **(server_opts or {}))
        server = SecurePair(server_config, server_side=True, initial_data=server_initial_data)
        client = SecurePair(
            client_config,
            server_side=False,
            server_hostname=server_hostname,
            session=session,
            initial_data=client_initial_data,
        )
        return client, server, Link(client, server, chunking)

    return factory


# --------------------------------------------------------------------------
# Driving pairs: what an application's event loop would do.


def drain(pair: SecurePair) -> list[Event]:
    """Take every pending event."""
    return list(pair.events())


def of_type(events: Iterable[Event], kind: type) -> list[Any]:
    """The events of one type."""
    return [e for e in events if isinstance(e, kind)]


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(size * 7919 + seed).randbytes(size)


def peer_of(link: Link, pair: SecurePair) -> SecurePair:
    return link.server if pair is link.client else link.client


def deliver(link: Link, source: SecurePair, *, reading: bool = True) -> tuple[bytes, bytes]:
    """Move everything ``source`` has to send into its peer, cut by the
    link's chunking, reading the peer's cleartext as it comes (so a big
    transfer never meets the buffer limit).  Returns (wire bytes, cleartext
    read by the peer)."""
    sink = peer_of(link, source)
    log = link.client_to_server if source is link.client else link.server_to_client
    wire = source.encrypted.read()
    log += wire
    received = bytearray()
    for piece in link.chunking(wire):
        view = memoryview(piece)
        while view:
            taken = sink.encrypted.write(view)
            view = view[taken:]
            if reading:
                received += sink.cleartext.read()
    return wire, bytes(received)


def transfer(link: Link, source: SecurePair, data: bytes, *, step: int = 1 << 16) -> bytes:
    """``source``'s application writes ``data``; returns what the peer's
    application read.  Writes ``step`` bytes at a time and delivers in
    between, as a driver with a socket would."""
    sink = peer_of(link, source)
    received = bytearray(sink.cleartext.read())
    view = memoryview(data)
    while view:
        taken = source.cleartext.write(view[:step])
        assert 0 < taken <= min(step, len(view))
        view = view[taken:]
        received += deliver(link, source)[1]
        link.pump()
        received += sink.cleartext.read()
    link.pump()
    received += sink.cleartext.read()
    return bytes(received)


def feed(pair: SecurePair, data: bytes, chunking: Chunking = whole) -> int:
    """Write ``data`` into ``pair.encrypted`` piece by piece; returns the
    bytes taken.  An error propagates from the piece that caused it."""
    taken = 0
    for piece in chunking(data):
        view = memoryview(piece)
        while view:
            count = pair.encrypted.write(view)
            assert count > 0
            taken += count
            view = view[count:]
    return taken


def feed_until_error(pair: SecurePair, data: bytes, chunking: Chunking = whole) -> SecurePairError:
    """Feed ``data`` until the pair raises; return the error (fail if none)."""
    try:
        feed(pair, data, chunking)
    except SecurePairError as exc:
        return exc
    pytest.fail(f"no error after feeding {len(data)} bytes; state {pair.state.value}")


def cut_after_close_notify(pair: SecurePair, data: bytes, chunking: Chunking) -> tuple[int, bytes]:
    """Feed ``data`` until the pair is unwrapped, as a STARTTLS driver does;
    return (bytes fed, the rest, which belongs to the plaintext protocol)."""
    from securepair import PairState

    fed = 0
    pieces: Iterator[bytes] = iter(chunking(data))
    for piece in pieces:
        view = memoryview(piece)
        while view and pair.state is not PairState.UNWRAPPED:
            count = pair.encrypted.write(view)
            fed += count
            view = view[count:]
        if pair.state is PairState.UNWRAPPED:
            return fed, bytes(view) + b"".join(pieces)
    return fed, b""
