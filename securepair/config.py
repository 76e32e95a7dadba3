"""TLS configuration with Node's option names, validated when it is made.

:class:`TLSConfig` takes the options of Node's ``tls.createSecureContext()``
and ``tls.createServer()`` (``key``, ``cert``, ``ca``, ``passphrase``,
``ciphers``, ``requestCert``, ``rejectUnauthorized``, ``ALPNProtocols``,
``SNICallback``, ``servername``, ``minVersion``, ``maxVersion``...) in Python
spelling, checks every one of them at construction, and builds the backend
context for each role on first use.

Safe by default: TLS 1.2 or newer, certificate and host name verification on
for clients, no RC4, 3DES, NULL, anonymous or export suites, no compression,
no renegotiation.  Every unsafe choice has a name that says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError, UnsupportedFeatureError

__all__ = ["TLSConfig", "PathOrPEM", "BACKENDS"]

#: A file path, or the PEM text itself (``bytes``, or ``str`` that starts
#: with ``-----BEGIN``), as Node accepts both.
PathOrPEM = Union[str, bytes, "os.PathLike[str]"]

SNICallback = Callable[[str], Union["TLSConfig", ssl.SSLContext, None]]

#: Backends this build knows, in the order ``backend="auto"`` prefers them.
BACKENDS = ("stdlib", "pyopenssl")

_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_LEGACY_VERSIONS = {"SSLv3", "TLSv1", "TLSv1.1"}

# Cipher-string words that switch on something broken.  Matched against each
# element of the string that does not start with "!" or "-" (exclusions are
# welcome).
_BROKEN_CIPHERS = (
    ("RC4", "RC4 is broken and RFC 7465 forbids it in TLS"),
    ("3DES", "3DES is open to the Sweet32 attack"),
    ("DES-CBC3", "3DES is open to the Sweet32 attack"),
    ("DES", "single DES is broken"),
    ("NULL", "NULL suites do not encrypt"),
    ("eNULL", "NULL suites do not encrypt"),
    ("aNULL", "anonymous suites do not authenticate the server"),
    ("ADH", "anonymous suites do not authenticate the server"),
    ("AECDH", "anonymous suites do not authenticate the server"),
    ("EXP", "export suites are deliberately weak"),
    ("EXPORT", "export suites are deliberately weak"),
    ("MD5", "MD5 MACs are broken"),
)

#: Smallest allowed buffer limit: two of the largest TLS 1.2 records, so a
#: full record can always be taken in while another is being read out.
MIN_BUFFER_LIMIT = 2 * (2**14 + 2048 + 5)


def _is_pem_text(value: object) -> bool:
    if isinstance(value, bytes):
        return True
    return isinstance(value, str) and value.lstrip().startswith("-----BEGIN")


def _read_source(option: str, value: PathOrPEM) -> bytes:
    """The PEM bytes of an option given as a path or as PEM text."""
    if isinstance(value, bytes):
        data = value
    elif _is_pem_text(value):
        data = str(value).encode("ascii")
    else:
        path = Path(os.fspath(value))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(option, f"file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(option, f"is a directory, not a PEM file: {path}") from None
        except PermissionError:
            raise ConfigError(option, f"cannot read {path}: permission denied") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(option, "does not contain PEM data (no -----BEGIN line)")
    return data


@contextlib.contextmanager
def pem_file(data: bytes) -> Iterator[str]:
    """A path that reads as ``data``, for APIs that only take file names.

    ``ssl.SSLContext.load_cert_chain`` reads files only.  On Linux the bytes
    go to an anonymous memory file (``memfd_create``), so a private key given
    as bytes never touches a disk; elsewhere a 0600 temporary file is used and
    removed at once.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("securepair-pem", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    handle, path = tempfile.mkstemp(suffix=".pem")
    try:
        os.write(handle, data)
        os.close(handle)
        yield path
    finally:
        os.unlink(path)


def _check_ciphers(ciphers: str) -> None:
    for element in re.split(r"[:, ]+", ciphers):
        if not element or element[0] in "!-":
            continue
        for word in re.split(r"[+]", element):
            for broken, why in _BROKEN_CIPHERS:
                # Whole dash-separated parts: ECDHE-RSA-RC4-SHA has RC4 in
                # the middle, AES128-SHA has no DES in it.
                if f"-{broken}-" in f"-{word}-":
                    raise ConfigError(
                        "ciphers",
                        f"{element!r} asks for {broken}, refused: {why}. "
                        "Leave ciphers unset for a safe default.",
                    )


_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----.*?-----END \1-----", re.S)


def _check_key(cert_pem: bytes, key_pem: bytes, passphrase: str | bytes | None) -> None:
    """Decrypt the key and match it to the certificate, naming the option
    at fault.  OpenSSL reports a wrong passphrase, a key of another type and
    a key of another certificate all as failures to load the chain (or
    "PEM lib"), and given no passphrase for an encrypted key it would prompt
    on the terminal."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    found = _KEY_BLOCK.search(key_pem)
    if found is None:
        return  # not a key format checked here; OpenSSL will say
    block = found.group(0)
    encrypted = b"ENCRYPTED" in block
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key = serialization.load_pem_private_key(block, password if encrypted else None)
    except TypeError:
        raise ConfigError("passphrase", "the key is encrypted: give its passphrase") from None
    except ValueError as exc:
        if encrypted:
            raise ConfigError("passphrase", "does not decrypt the key") from None
        raise ConfigError("key", f"is not a valid private key ({exc})") from None
    except UnsupportedAlgorithm:
        return
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        return  # OpenSSL will say what is wrong with it
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError("key", "does not match the certificate in cert")


def hostname_matches(pattern: str, name: str) -> bool:
    """Whether host name ``name`` matches ``pattern``: an exact name or
    ``*.example.com`` (one label), case-insensitive, trailing dot ignored."""
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if pattern.startswith("*."):
        # One label only, as RFC 6125 6.4.3 allows for certificates.
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


@dataclass(frozen=True, kw_only=True, eq=False)
class TLSConfig:
    """TLS options for one side of a connection (or both).

    Every option is checked when the config is made; a bad one raises
    :class:`~securepair.errors.ConfigError` naming the option.  The same
    config can serve both roles: the backend context for the client side and
    for the server side are each built on first use and then shared by every
    pair that uses them.
    """

    #: ``"stdlib"`` (``ssl.SSLObject``), ``"pyopenssl"``, or ``"auto"``: the
    #: stdlib unless an option needs pyOpenSSL.
    backend: str = "auto"
    #: Private key: a path, or PEM bytes.  May be omitted if ``cert`` holds it.
    key: PathOrPEM | None = None
    #: Certificate chain (leaf first): a path, or PEM bytes.
    cert: PathOrPEM | None = None
    #: Trusted CA certificates: a path, PEM bytes, or a list of them.  ``None``
    #: on a client means the system's CAs.  A client that pins a server's own
    #: self-signed certificate passes that certificate here.
    ca: PathOrPEM | Sequence[PathOrPEM] | None = None
    #: Password of an encrypted ``key``.
    passphrase: str | bytes | None = None
    #: OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are all safe).
    #: Broken families (RC4, 3DES, NULL, anonymous, export) are refused.
    ciphers: str | None = None
    #: Server: ask the client for a certificate.
    request_cert: bool = False
    #: Fail the handshake when the peer's certificate does not verify.
    #: ``False`` keeps verifying but only reports the result in
    #: ``authorized`` / ``authorization_error`` (Node's semantics).
    reject_unauthorized: bool = True
    #: Client: do not verify the server at all.  Unsafe, and named so.
    insecure_no_verify: bool = False
    #: Client: check that the certificate covers the host name.
    check_hostname: bool = True
    #: ALPN protocols, most preferred first.
    alpn_protocols: Sequence[str] | None = None
    #: Deprecated NPN list; mapped to ALPN with a warning (NPN is gone from
    #: modern TLS).
    npn_protocols: Sequence[str] | None = None
    #: Server: ``sni_callback(servername)`` returns the config to use for
    #: that name, or ``None`` for the default.  Called before the server's
    #: certificate is chosen.
    sni_callback: SNICallback | None = None
    #: Client: default SNI / host name to verify when the pair is given none.
    servername: str | None = None
    #: Server: session id context for session resumption with client
    #: certificates (pyOpenSSL backend).
    session_id_context: bytes | None = None
    #: Lowest protocol version: ``"TLSv1.2"`` (default) or ``"TLSv1.3"``.
    min_version: str = "TLSv1.2"
    #: Highest protocol version, or ``None`` for the newest.
    max_version: str | None = None
    #: Elliptic curve for ECDHE on servers (e.g. ``"prime256v1"``).
    ecdh_curve: str | None = None
    #: Treat a transport EOF without close_notify as a normal end (as HTTPS
    #: clients do) instead of :class:`~securepair.errors.RaggedEOFError`.
    allow_ragged_eof: bool = False
    #: Append NSS key log lines to this file (for Wireshark).  Debugging only.
    keylog_filename: str | None = None
    #: ``keylog_callback(line)`` gets each NSS key log line (bytes, no
    #: newline) as secrets are made: Node's ``keylog`` event (pyOpenSSL).
    keylog_callback: Callable[[bytes], None] | None = None
    #: Server: the OCSP response to staple, or ``ocsp_staple(server_name)``
    #: returning it (or ``None``) per handshake (pyOpenSSL).
    ocsp_staple: bytes | Callable[[str | None], bytes | None] | None = None
    #: Client: ask the server for a stapled OCSP response; it arrives as an
    #: :class:`~securepair.events.OCSPResponse` event (pyOpenSSL).
    request_ocsp: bool = False
    #: Allow TLS 1.2 renegotiation (``pair.renegotiate()`` and the peer's).
    #: Off by default: renegotiation is a source of attacks and of hangs
    #: (pyOpenSSL).
    allow_renegotiation: bool = False
    #: Limit in bytes for each of the pair's buffers: cleartext waiting to be
    #: read or encrypted, ciphertext waiting to be sent or decrypted.
    buffer_limit: int = 1 << 20

    _sni_contexts: list[tuple[str, TLSConfig]] = field(default_factory=list, repr=False)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in ("auto", *BACKENDS):
            raise ConfigError(
                "backend", f"{self.backend!r} is not one of 'auto', 'stdlib', 'pyopenssl'"
            )
        if self.min_version in _LEGACY_VERSIONS:
            raise ConfigError(
                "min_version",
                f"{self.min_version} is refused: TLS 1.0 and 1.1 are deprecated (RFC 8996)",
            )
        if self.min_version not in _VERSIONS:
            raise ConfigError("min_version", f"{self.min_version!r} is not 'TLSv1.2' or 'TLSv1.3'")
        if self.max_version is not None:
            if self.max_version not in _VERSIONS:
                raise ConfigError(
                    "max_version", f"{self.max_version!r} is not 'TLSv1.2' or 'TLSv1.3'"
                )
            if _VERSIONS[self.max_version] < _VERSIONS[self.min_version]:
                raise ConfigError(
                    "max_version", f"{self.max_version} is below min_version {self.min_version}"
                )
        if self.ciphers is not None:
            if not isinstance(self.ciphers, str) or not self.ciphers.strip():
                raise ConfigError("ciphers", "must be a non-empty OpenSSL cipher string")
            _check_ciphers(self.ciphers)
        if self.npn_protocols is not None:
            warnings.warn(
                "npn_protocols is deprecated: NPN was replaced by ALPN (RFC 7301); "
                "the list is used as alpn_protocols",
                DeprecationWarning,
                stacklevel=3,
            )
            if self.alpn_protocols is None:
                object.__setattr__(self, "alpn_protocols", list(self.npn_protocols))
        if self.alpn_protocols is not None:
            if isinstance(self.alpn_protocols, str | bytes):
                raise ConfigError("alpn_protocols", "must be a list of names, not one string")
            for name in self.alpn_protocols:
                if not isinstance(name, str) or not 0 < len(name.encode()) < 256:
                    raise ConfigError("alpn_protocols", f"{name!r} is not a name of 1 to 255 bytes")
        if self.key is not None and self.cert is None:
            raise ConfigError("cert", "key is set but cert is missing")
        if self.cert is not None:
            cert_pem = _read_source("cert", self.cert)
            key_pem = _read_source("key", self.key) if self.key is not None else cert_pem
            if b"PRIVATE KEY-----" not in key_pem:
                raise ConfigError(
                    "key", "cert is set but no private key was given (in key or in cert)"
                )
            self._cache["pem"] = (cert_pem, key_pem)
        if self.ca is not None:
            sources = [self.ca] if isinstance(self.ca, str | bytes | os.PathLike) else list(self.ca)
            if not sources:
                raise ConfigError("ca", "is an empty list; pass None for the system CAs")
            self._cache["ca"] = b"\n".join(_read_source("ca", s) for s in sources)
        if self.request_cert and self.ca is None:
            raise ConfigError(
                "ca", "request_cert needs ca: the CAs that client certificates must chain to"
            )
        if self.insecure_no_verify and self.ca is not None:
            raise ConfigError("insecure_no_verify", "contradicts ca: pinning needs verification")
        if self.session_id_context is not None and not 0 < len(self.session_id_context) <= 32:
            raise ConfigError("session_id_context", "must be 1 to 32 bytes")
        if not isinstance(self.buffer_limit, int) or self.buffer_limit < MIN_BUFFER_LIMIT:
            raise ConfigError(
                "buffer_limit",
                f"must be at least {MIN_BUFFER_LIMIT} bytes (two full TLS records)",
            )
        if self.passphrase is not None and not isinstance(self.passphrase, str | bytes):
            raise ConfigError("passphrase", "must be str or bytes")
        if "pem" in self._cache:
            cert_pem, key_pem = self._cache["pem"]
            _check_key(cert_pem, key_pem, self.passphrase)
        # Build both contexts now so a bad key, a key that does not match its
        # certificate or a cipher string OpenSSL rejects fails here, naming
        # the option, rather than at the first connection.
        backend = self.resolved_backend()
        if self.cert is not None:
            self.backend_context(backend, server_side=True)
        self.backend_context(backend, server_side=False)

    # ------------------------------------------------------------------
    # Backend choice

    def needed_features(self) -> list[str]:
        """Options set on this config that only the pyOpenSSL backend has."""
        needs = []
        if not self.reject_unauthorized:
            needs.append("reject_unauthorized=False (verify but don't reject)")
        if self.session_id_context is not None:
            needs.append("session_id_context")
        if self.keylog_callback is not None:
            needs.append("keylog_callback")
        if self.ocsp_staple is not None:
            needs.append("ocsp_staple")
        if self.request_ocsp:
            needs.append("request_ocsp")
        if self.allow_renegotiation:
            needs.append("allow_renegotiation")
        return needs

    def resolved_backend(self) -> str:
        """The backend this config uses, with ``"auto"`` decided."""
        cached = self._cache.get("backend")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        needs = self.needed_features()
        if self.backend == "auto":
            chosen = "pyopenssl" if needs else "stdlib"
        elif self.backend == "stdlib" and needs:
            raise UnsupportedFeatureError(
                needs[0].split("=")[0].split(" ")[0],
                f"{needs[0]} is not available on backend 'stdlib' (ssl.SSLObject); "
                "use backend='pyopenssl' or 'auto'",
            )
        else:
            chosen = self.backend
        self._cache["backend"] = chosen
        return chosen

    def backend_context(self, backend: str, *, server_side: bool) -> Any:
        """The context of ``backend`` for one role (built once)."""
        if backend == "stdlib":
            return self.stdlib_context(server_side=server_side)
        return self.pyopenssl_context(server_side=server_side)

    def pyopenssl_context(self, *, server_side: bool) -> Any:
        """The ``OpenSSL.SSL.Context`` for one role, built once and shared."""
        key = ("pyopenssl", server_side)
        ctx = self._cache.get(key)
        if ctx is None:
            from .pyopenssl_config import build_context

            ctx = build_context(self, server_side)
            self._cache[key] = ctx
        return ctx

    # ------------------------------------------------------------------
    # SNI

    def add_context(self, hostname: str, config: TLSConfig) -> None:
        """Serve ``config`` (its certificate and options) to clients that ask
        for ``hostname``; ``*.example.com`` matches one label.  Node's
        ``server.addContext()``."""
        if not hostname or not isinstance(config, TLSConfig):
            raise ConfigError("add_context", "needs a host name and a TLSConfig")
        if config.cert is None:
            raise ConfigError("add_context", f"the config for {hostname!r} has no cert")
        refusal = self._route_refusal(config)
        if refusal is not None:
            raise ConfigError("add_context", f"the config for {hostname!r} {refusal}")
        self._sni_contexts.append((hostname, config))

    def _client_verification(self) -> tuple[bool, bool]:
        """How a server with this config verifies clients: (asks for a
        certificate, rejects a bad one)."""
        return self.request_cert, self.request_cert and self.reject_unauthorized

    def _route_refusal(self, config: TLSConfig) -> str | None:
        """Why ``config`` cannot serve a name routed from this server config,
        or None.  OpenSSL switches the certificate and the trust store of a
        connection to the routed context, but keeps the verification mode it
        started with: a route that asks for client certificates would not
        ask (and one that does not would still ask).  Quietly, that is a
        client certificate requirement that is not enforced."""
        theirs, ours = config._client_verification(), self._client_verification()
        if theirs == ours:
            return None
        return (
            f"verifies clients differently (request_cert={config.request_cert}, "
            f"reject_unauthorized={config.reject_unauthorized}) from the server's config "
            f"(request_cert={self.request_cert}, reject_unauthorized={self.reject_unauthorized}); "
            "OpenSSL keeps the verification a connection started with, so a route "
            "cannot change it: set them alike on every config of one server"
        )

    def config_for_server_name(self, server_name: str) -> TLSConfig | ssl.SSLContext | None:
        """The config to serve for an SNI name: ``sni_callback`` first, then
        :meth:`add_context` entries (exact names before wildcards), else
        ``None`` (this config)."""
        if self.sni_callback is not None:
            chosen = self.sni_callback(server_name)
            if isinstance(chosen, TLSConfig):
                refusal = self._route_refusal(chosen)
                if refusal is not None:
                    raise ConfigError(
                        "sni_callback", f"the config returned for {server_name!r} {refusal}"
                    )
            if chosen is not None:
                return chosen
        for exact in (True, False):
            for pattern, config in self._sni_contexts:
                if pattern.startswith("*.") == exact:
                    continue
                if hostname_matches(pattern, server_name):
                    return config
        return None

    # ------------------------------------------------------------------
    # The stdlib backend's context

    def stdlib_context(self, *, server_side: bool) -> ssl.SSLContext:
        """The ``ssl.SSLContext`` for one role, built once and then shared."""
        key = ("stdlib", server_side)
        ctx = self._cache.get(key)
        if ctx is None:
            ctx = self._build_stdlib_context(server_side)
            self._cache[key] = ctx
        return ctx

    def _build_stdlib_context(self, server_side: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = _VERSIONS[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = _VERSIONS[self.max_version]
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if server_side:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if self.ciphers is not None:
            try:
                ctx.set_ciphers(self.ciphers)
            except ssl.SSLError as exc:
                # set_ciphers() raises an SSLError without library/reason.
                detail = getattr(exc, "reason", None) or exc.args[0]
                raise ConfigError(
                    "ciphers", f"OpenSSL accepts no cipher in {self.ciphers!r} ({detail})"
                ) from None
        pem = self._cache.get("pem")
        if pem is not None:
            cert_pem, key_pem = pem
            password = self.passphrase
            try:
                with pem_file(cert_pem) as cert_path, pem_file(key_pem) as key_path:
                    ctx.load_cert_chain(cert_path, key_path, password=password or None)
            except ssl.SSLError as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                if "KEY_VALUES_MISMATCH" in reason:
                    raise ConfigError("key", "does not match the certificate in cert") from None
                if "BAD_DECRYPT" in reason or "bad decrypt" in str(exc):
                    raise ConfigError("passphrase", "does not decrypt the key") from None
                raise ConfigError("cert", f"OpenSSL could not load it ({reason})") from None
            except TypeError as exc:
                raise ConfigError("passphrase", str(exc)) from None
        elif server_side:
            raise ConfigError("cert", "a server needs a certificate and a key")
        ca = self._cache.get("ca")
        if ca is not None:
            try:
                ctx.load_verify_locations(cadata=ca.decode("ascii"))
            except (ssl.SSLError, UnicodeDecodeError) as exc:
                raise ConfigError("ca", f"OpenSSL could not load it ({exc})") from None
        elif not server_side and not self.insecure_no_verify:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if server_side:
            ctx.verify_mode = ssl.CERT_REQUIRED if self.request_cert else ssl.CERT_NONE
        elif self.insecure_no_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.check_hostname = self.check_hostname
            ctx.verify_mode = ssl.CERT_REQUIRED
        if self.alpn_protocols:
            ctx.set_alpn_protocols(list(self.alpn_protocols))
        if self.ecdh_curve is not None:
            try:
                ctx.set_ecdh_curve(self.ecdh_curve)
            except ValueError:
                raise ConfigError("ecdh_curve", f"unknown curve {self.ecdh_curve!r}") from None
        if self.keylog_filename is not None:
            ctx.keylog_filename = self.keylog_filename
        if server_side:
            ctx.sni_callback = self._stdlib_sni
        return ctx

    def _stdlib_sni(
        self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext
    ) -> int | None:
        # Runs inside OpenSSL's ClientHello processing, before the
        # certificate is chosen.  The pair reads what was recorded here.
        sslobj._securepair_server_name = server_name  # type: ignore[attr-defined]
        if server_name is None or (self.sni_callback is None and not self._sni_contexts):
            return None
        try:
            chosen = self.config_for_server_name(server_name)
            if isinstance(chosen, TLSConfig):
                sslobj.context = chosen.stdlib_context(server_side=True)
            elif isinstance(chosen, ssl.SSLContext):
                wanted = ssl.CERT_REQUIRED if self.request_cert else ssl.CERT_NONE
                if chosen.verify_mode != wanted:
                    raise ConfigError(
                        "sni_callback",
                        f"the context returned for {server_name!r} has verify_mode "
                        f"{chosen.verify_mode.name}, the server's config {wanted.name}; OpenSSL "
                        "keeps the verification a connection started with",
                    )
                sslobj.context = chosen
        except Exception as exc:  # the application's callback failed
            sslobj._securepair_sni_error = exc  # type: ignore[attr-defined]
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None
