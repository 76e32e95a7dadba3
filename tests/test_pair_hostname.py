"""The host name a client verifies: checked the same on every backend.

OpenSSL's own host check turns itself off for a name it cannot match (a
trailing dot, an empty label), which would let any certificate from a
trusted CA pass; the pair refuses such names before OpenSSL sees them.
"""

from __future__ import annotations

import pytest

from securepair import SecurePair, TLSConfig, certgen
from securepair.errors import CertificateVerificationError, ConfigError
from securepair.testing.link import Link

CA = certgen.CertificateAuthority("hostname test CA")
LEAF = CA.issue(["localhost", "api.example.test"])
#: "bücher.example" in a certificate: DNS names there are A-labels.
IDN_LEAF = CA.issue(["xn--bcher-kva.example"])


def _handshake(backend: str, name: str) -> SecurePair:
    server = SecurePair(
        TLSConfig(cert=LEAF.cert_pem, key=LEAF.key_pem, backend=backend), server_side=True
    )
    client = SecurePair(
        TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname=name
    )
    Link(client, server).handshake()
    return client


@pytest.mark.parametrize("name", ["bücher.example", "xn--bcher-kva.example"])
def test_internationalized_names_go_out_as_a_labels(backend: str, name: str) -> None:
    server = SecurePair(
        TLSConfig(cert=IDN_LEAF.cert_pem, key=IDN_LEAF.key_pem, backend=backend),
        server_side=True,
    )
    client = SecurePair(
        TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname=name
    )
    Link(client, server).handshake()
    assert client.authorized
    # SNI carries the A-label, whichever spelling the client was given.
    assert server.server_name == "xn--bcher-kva.example"


@pytest.mark.parametrize("name", ["localhost", "localhost.", "API.Example.Test."])
def test_fully_qualified_names_match(backend: str, name: str) -> None:
    client = _handshake(backend, name)
    assert client.authorized
    assert client.server_name is None or not client.server_name.endswith(".")


@pytest.mark.parametrize("name", ["wrong.test", "wrong.test.", "localhost.evil.test"])
def test_other_names_never_pass(backend: str, name: str) -> None:
    with pytest.raises(CertificateVerificationError) as caught:
        _handshake(backend, name)
    assert caught.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"


@pytest.mark.parametrize(
    "name", ["x..y", ".localhost", "localhost..", "", "a" * 64 + ".test", "bad host", "a/b"]
)
def test_invalid_names_are_refused_up_front(backend: str, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SecurePair(
            TLSConfig(ca=CA.cert_pem, backend=backend), server_side=False, server_hostname=name
        )
    assert caught.value.option == "server_hostname"
