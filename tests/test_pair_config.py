"""TLSConfig validation: every bad option fails at construction with a
ConfigError that names it and says why; an ``ssl.SSLContext`` is accepted
wherever a config is; backends say what they cannot do."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from securepair import SecurePair, TLSConfig
from securepair.config import MIN_BUFFER_LIMIT
from securepair.errors import ConfigError, LocalProtocolError, UnsupportedFeatureError

from .fixtures_engine import DEFAULT_HOSTNAME, Certs, transfer


def config_error(option: str, match: str, **options: Any) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as caught:
        TLSConfig(**options)
    error = caught.value
    assert error.option == option
    assert str(error).startswith(f"{option}: ")
    assert isinstance(error, LocalProtocolError) and isinstance(error, ValueError)
    return error


@pytest.mark.parametrize(
    ("ciphers", "why"),
    [
        ("RC4-SHA", "RC4 is broken and RFC 7465 forbids it"),
        ("ECDHE-RSA-RC4-SHA", "RC4"),
        ("HIGH:RC4", "RC4"),
        ("DES-CBC3-SHA", "Sweet32"),
        ("3DES", "Sweet32"),
        ("NULL-SHA256", "do not encrypt"),
        ("aNULL", "do not authenticate"),
        ("ADH-AES128-SHA", "do not authenticate"),
        ("EXP-RC4-MD5", "deliberately weak|RC4"),
        ("ECDHE+MD5", "MD5"),
    ],
)
def test_broken_ciphers_refused(ciphers: str, why: str) -> None:
    error = config_error("ciphers", why, ciphers=ciphers)
    assert "refused" in str(error)


@pytest.mark.parametrize(
    "ciphers", ["HIGH:!RC4:!aNULL:!MD5", "ECDHE+AESGCM", "-3DES:ECDHE+CHACHA20"]
)
def test_exclusions_are_welcome(ciphers: str) -> None:
    TLSConfig(ciphers=ciphers, backend="stdlib")


def test_cipher_string_openssl_rejects() -> None:
    config_error("ciphers", "OpenSSL accepts no cipher", ciphers="NO-SUCH-CIPHER", backend="stdlib")
    config_error("ciphers", "non-empty", ciphers="  ")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "SSLv3"])
def test_legacy_min_version_refused(version: str) -> None:
    config_error("min_version", "RFC 8996", min_version=version)


def test_versions() -> None:
    config_error("min_version", "is not", min_version="TLSv9")
    config_error("max_version", "is not", max_version="TLSv1")
    config_error("max_version", "below min_version", min_version="TLSv1.3", max_version="TLSv1.2")


def test_backend_name() -> None:
    config_error("backend", "not one of", backend="gnutls")


def test_bad_paths(tmp_path: Path, certs: Certs) -> None:
    missing = tmp_path / "missing.pem"
    config_error("cert", "file not found", cert=str(missing))
    config_error("cert", "file not found", cert=missing)
    config_error("ca", "is a directory", ca=str(tmp_path))
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    config_error("ca", "does not contain PEM data", ca=not_pem)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(certs.ecdsa.cert)
    config_error("key", "file not found", cert=cert_file, key=tmp_path / "nokey.pem")
    config_error("ca", "file not found", ca=[certs.ca_pem, str(missing)])
    config_error("ca", "empty list", ca=[])


def test_paths_and_pem_alike(tmp_path: Path, certs: Certs, make_pair_link: Any) -> None:
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    ca_file = tmp_path / "ca.pem"
    cert_file.write_bytes(certs.ecdsa.cert)
    key_file.write_bytes(certs.ecdsa.key)
    ca_file.write_bytes(certs.ca_pem)
    server = TLSConfig(backend="stdlib", cert=str(cert_file), key=key_file)
    client = TLSConfig(backend="stdlib", ca=[str(ca_file)])
    c, _s, link = make_pair_link(client_config=client, server_config=server)
    link.handshake()
    assert transfer(link, c, b"ok") == b"ok"
    # PEM given as str works too, and a cert file holding the key as well.
    TLSConfig(backend="stdlib", cert=certs.ecdsa.cert.decode(), key=certs.ecdsa.key.decode())
    TLSConfig(backend="stdlib", cert=certs.ecdsa.cert + certs.ecdsa.key)


def test_key_and_cert_mismatch(certs: Certs) -> None:
    # A key of another type, and a key of the same type for another cert.
    config_error(
        "key", "does not match", cert=certs.rsa.cert, key=certs.ecdsa.key, backend="stdlib"
    )
    config_error("key", "does not match", cert=certs.ecdsa.cert, key=certs.client.key)
    config_error("key", "does not match", cert=certs.ecdsa.cert + certs.client.key)


def test_key_that_is_not_a_key(certs: Certs) -> None:
    # Built in pieces so the file holds no line that looks like a key.
    marker = b"PRIVATE " + b"KEY-----"
    broken = b"-----BEGIN " + marker + b"\nAAAA\n-----END " + marker + b"\n"
    config_error("key", "not a valid private key", cert=certs.ecdsa.cert, key=broken)


def test_missing_key(certs: Certs) -> None:
    config_error("key", "no private key", cert=certs.ecdsa.cert)
    config_error("cert", "cert is missing", key=certs.ecdsa.key)


def test_server_needs_a_certificate() -> None:
    with pytest.raises(ConfigError) as caught:
        SecurePair(TLSConfig(backend="stdlib"), server_side=True)
    assert caught.value.option == "cert"


def test_client_needs_a_host_name(certs: Certs) -> None:
    config = TLSConfig(backend="stdlib", ca=certs.ca_pem)
    with pytest.raises(ConfigError) as caught:
        SecurePair(config, server_side=False)
    assert caught.value.option == "server_hostname"


def test_passphrase(certs: Certs, make_pair_link: Any) -> None:
    key = serialization.load_pem_private_key(certs.ecdsa.key, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    )
    config_error(
        "passphrase",
        "does not decrypt",
        cert=certs.ecdsa.cert,
        key=encrypted,
        passphrase="wrong",
        backend="stdlib",
    )
    config_error("passphrase", "str or bytes", cert=certs.ecdsa.cert, key=encrypted, passphrase=42)
    # Without one, OpenSSL would prompt on the terminal: refused instead.
    config_error("passphrase", "key is encrypted", cert=certs.ecdsa.cert, key=encrypted)
    # A passphrase for a key that is not encrypted is harmless.
    TLSConfig(backend="stdlib", cert=certs.ecdsa.cert, key=certs.ecdsa.key, passphrase="x")
    server = TLSConfig(backend="stdlib", cert=certs.ecdsa.cert, key=encrypted, passphrase=b"right")
    client = TLSConfig(backend="stdlib", ca=certs.ca_pem)
    _c, _s, link = make_pair_link(client_config=client, server_config=server)
    link.handshake()


@pytest.mark.parametrize(
    ("alpn", "match"),
    [
        ("h2", "list of names, not one string"),
        (b"h2", "list of names"),
        ([""], "1 to 255 bytes"),
        (["x" * 256], "1 to 255 bytes"),
        ([b"h2"], "1 to 255 bytes"),
    ],
)
def test_alpn_names(alpn: Any, match: str) -> None:
    config_error("alpn_protocols", match, alpn_protocols=alpn)


@pytest.mark.parametrize("limit", [0, MIN_BUFFER_LIMIT - 1, "1MB", 1.5e6])
def test_buffer_limit(limit: Any) -> None:
    error = config_error("buffer_limit", "at least", buffer_limit=limit)
    assert str(MIN_BUFFER_LIMIT) in str(error)


def test_other_options(certs: Certs) -> None:
    config_error(
        "ca", "request_cert needs ca", request_cert=True, cert=certs.ecdsa.cert, key=certs.ecdsa.key
    )
    config_error("insecure_no_verify", "contradicts ca", insecure_no_verify=True, ca=certs.ca_pem)
    config_error("session_id_context", "1 to 32 bytes", session_id_context=b"x" * 33)
    config_error(
        "ecdh_curve",
        "unknown curve",
        ecdh_curve="nope",
        cert=certs.ecdsa.cert,
        key=certs.ecdsa.key,
        backend="stdlib",
    )


def test_unknown_config_type() -> None:
    with pytest.raises(ConfigError) as caught:
        SecurePair("not a config", server_side=True)  # type: ignore[arg-type]
    assert caught.value.option == "config"


# --------------------------------------------------------------------------
# Accepted in place of a config, and deprecated spellings.


def test_ssl_context_accepted(certs: Certs, make_pair_link: Any, tls_version: str) -> None:
    version = ssl.TLSVersion.TLSv1_3 if tls_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = server_ctx.maximum_version = version
    server = TLSConfig(backend="stdlib", cert=certs.ecdsa.cert, key=certs.ecdsa.key)
    server_ctx = server.stdlib_context(server_side=True)
    client_ctx = ssl.create_default_context(cadata=certs.ca_pem.decode())
    client_ctx.minimum_version = client_ctx.maximum_version = version
    client_ctx.set_alpn_protocols(["h2"])
    c, s, link = make_pair_link(client_config=client_ctx, server_config=server_ctx)
    link.handshake()
    assert c.version == tls_version
    assert c.authorized is True
    assert c.server_name == DEFAULT_HOSTNAME
    assert transfer(link, c, b"via SSLContext") == b"via SSLContext"
    assert transfer(link, s, b"and back") == b"and back"
    c.close()
    s.close()
    link.pump()


def test_plain_ssl_context_server(certs: Certs, make_pair_link: Any) -> None:
    """A hand-made server context, with no securepair SNI hook on it."""
    import tempfile

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "both.pem"
        path.write_bytes(certs.ecdsa.cert + certs.ecdsa.key)
        ctx.load_cert_chain(path)
    c, _s, link = make_pair_link(server_config=ctx)
    link.handshake()
    assert transfer(link, c, b"hello") == b"hello"


def test_an_applications_sslobject_class_is_used(certs: Certs, make_pair_link: Any) -> None:
    """The engine calls SSLObject's C object directly, but not past an
    sslobject_class the application installed (for tracing, say)."""
    calls: list[str] = []

    class Traced(ssl.SSLObject):
        def do_handshake(self) -> None:
            calls.append("do_handshake")
            super().do_handshake()

        def write(self, data: Any) -> int:
            calls.append("write")
            return super().write(data)

        def read(self, len: int = 1024, buffer: Any = None) -> Any:
            calls.append("read")
            return super().read(len, buffer)

    client_ctx = ssl.create_default_context(cadata=certs.ca_pem.decode())
    client_ctx.sslobject_class = Traced
    server = TLSConfig(backend="stdlib", cert=certs.ecdsa.cert, key=certs.ecdsa.key)
    c, _s, link = make_pair_link(client_config=client_ctx, server_config=server)
    link.handshake()
    assert transfer(link, c, b"traced") == b"traced"
    assert {"do_handshake", "write", "read"} <= set(calls)


def test_npn_protocols_deprecated_and_mapped(certs: Certs, make_pair_link: Any) -> None:
    with pytest.warns(DeprecationWarning, match="npn_protocols") as record:
        client = TLSConfig(backend="stdlib", ca=certs.ca_pem, npn_protocols=["http/1.1"])
    assert record[0].filename == __file__, "the warning points at the caller"
    assert list(client.alpn_protocols or ()) == ["http/1.1"]
    server = TLSConfig(
        backend="stdlib", cert=certs.ecdsa.cert, key=certs.ecdsa.key, alpn_protocols=["http/1.1"]
    )
    c, s, link = make_pair_link(client_config=client, server_config=server)
    link.handshake()
    assert c.alpn_protocol == s.alpn_protocol == "http/1.1"


def test_npn_does_not_override_alpn(certs: Certs) -> None:
    with pytest.warns(DeprecationWarning):
        config = TLSConfig(
            backend="stdlib", ca=certs.ca_pem, alpn_protocols=["h2"], npn_protocols=["spdy/3"]
        )
    assert list(config.alpn_protocols or ()) == ["h2"]


@pytest.mark.parametrize(
    "options",
    [{"reject_unauthorized": False}, {"session_id_context": b"app"}],
)
def test_stdlib_cannot_verify_without_rejecting(certs: Certs, options: dict[str, Any]) -> None:
    """Features the stdlib backend lacks fail at configuration time, naming
    the backend that has them."""
    with pytest.raises(UnsupportedFeatureError, match="pyopenssl") as caught:
        TLSConfig(backend="stdlib", ca=certs.ca_pem, **options)
    assert caught.value.option == next(iter(options))
    assert "stdlib" in str(caught.value)


def test_safe_defaults(certs: Certs) -> None:
    config = TLSConfig(backend="stdlib", ca=certs.ca_pem)
    ctx = config.stdlib_context(server_side=False)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    names = {c["name"] for c in ctx.get_ciphers()}
    assert not any("RC4" in n or "3DES" in n or "NULL" in n or "DES-CBC3" in n for n in names)


def test_ssl_context_client_needs_a_host_name(certs: Certs) -> None:
    """ssl.SSLObject would silently skip the host name check: refused."""
    ctx = ssl.create_default_context(cadata=certs.ca_pem.decode())
    with pytest.raises(ConfigError) as caught:
        SecurePair(ctx, server_side=False)
    assert caught.value.option == "server_hostname"
    ctx.check_hostname = False
    SecurePair(ctx, server_side=False)
    # Verification off on purpose needs no name either.
    SecurePair(TLSConfig(backend="stdlib", insecure_no_verify=True), server_side=False)
    SecurePair(
        TLSConfig(backend="stdlib", ca=certs.ca_pem, check_hostname=False), server_side=False
    )
