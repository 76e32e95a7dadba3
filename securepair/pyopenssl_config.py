"""TLSConfig -> ``OpenSSL.SSL.Context``, and pyOpenSSL connections from it.

The same options as the stdlib context (:mod:`securepair.config`), with the
same safe defaults and the same cipher string, plus the features only this
backend has.  Context-wide callbacks (verify, info, SNI, key log, OCSP) find
the connection they are about through the connection's app data.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from .backends.pyopenssl import PyOpenSSLConnection, is_context
from .errors import ConfigError

if TYPE_CHECKING:
    from _cffi_backend import Lib

    from .config import TLSConfig

#: Python's own default cipher string, so both backends offer the same
#: TLS 1.2 suites when ``ciphers`` is not set.
DEFAULT_CIPHERS = getattr(
    ssl,
    "_DEFAULT_CIPHERS",
    "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM",
)

#: OpenSSL 3 servers refuse client-initiated renegotiation unless this
#: option (SSL_OP_BIT(8)) is set; pyOpenSSL does not name it.
SSL_OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8

#: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a write held back by a
#: renegotiation is retried from another buffer.
MODE_ACCEPT_MOVING_WRITE_BUFFER = 2

_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}


def _app(conn: SSL.Connection) -> PyOpenSSLConnection | None:
    ref = conn.get_app_data()
    found = ref() if isinstance(ref, weakref.ref) else None
    return found if isinstance(found, PyOpenSSLConnection) else None


def _on_verify(conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int) -> bool:
    owner = _app(conn)
    if owner is None:
        return bool(ok)
    return owner.on_verify(ok, errnum, depth, cert)


#: OpenSSL's SSL_CB_ALERT: the only info callbacks the owner records.
_CB_ALERT = 0x4000


def _on_info(ssl: Any, where: int, ret: int) -> None:
    # OpenSSL's info callback fires at every handshake state change (about
    # fifteen a side), and only alerts matter.  Installed bare, not through
    # Context.set_info_callback, whose wrapper looks the connection up on
    # every call.
    if where & _CB_ALERT:
        conn = SSL.Connection._reverse_mapping.get(ssl)
        owner = _app(conn) if conn is not None else None
        if owner is not None:
            owner.on_info(where, ret)


def _info_callback(*, in_c: bool = True) -> tuple[Any, str]:
    """The info callback for our contexts, and which kind it is (``"c"``
    or ``"python"``).

    With the C module built (and ``in_c``), csrc/infofilter.c: it looks at
    ``where`` in C and calls :func:`_on_info` for alerts only.  A Python
    callback for every state change cost 3% of a handshake pair (measured);
    the filter, nothing measurable.  Otherwise a cffi callback of
    :func:`_on_info`.
    """
    # SECUREPAIR_FRAMER chooses the record framer only: the filter, from
    # the same C module, is used whenever that is built (the Python
    # callback does the same work, slower).
    if in_c:
        try:
            from .records._cframer import ffi as cffi
            from .records._cframer import lib as clib

            # The stub's _Lib is not cffi's (final) Lib class.
            address = cffi.addressof(cast("Lib", clib), "sp_info_filter")
        except (ImportError, AttributeError):  # not built, or built before the filter
            pass
        else:
            cffi.def_extern(name="sp_on_alert")(_on_info)
            pointer = int(cffi.cast("uintptr_t", address))
            return _ffi.cast("void (*)(const SSL *, int, int)", pointer), "c"
    return _ffi.callback("void (*)(const SSL *, int, int)", _on_info), "python"


# Module-level, so that it lives as long as any context that calls it.
_INFO_CALLBACK, INFO_CALLBACK_KIND = _info_callback()


def build_context(config: TLSConfig, server_side: bool) -> SSL.Context:
    """Build the ``OpenSSL.SSL.Context`` for one role of ``config``."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server_side else SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSIONS[config.min_version])
    if config.max_version is not None:
        ctx.set_max_proto_version(_VERSIONS[config.max_version])
    options = SSL.OP_NO_COMPRESSION
    if not config.allow_renegotiation:
        options |= SSL.OP_NO_RENEGOTIATION
    elif server_side:
        options |= SSL_OP_ALLOW_CLIENT_RENEGOTIATION
    if server_side:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    ctx.set_mode(MODE_ACCEPT_MOVING_WRITE_BUFFER)
    try:
        ctx.set_cipher_list((config.ciphers or DEFAULT_CIPHERS).encode("ascii"))
    except SSL.Error:
        raise ConfigError("ciphers", f"OpenSSL accepts no cipher in {config.ciphers!r}") from None
    pem = config._cache.get("pem")
    if pem is not None:
        cert_pem, key_pem = pem
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise ConfigError("cert", f"could not be parsed ({exc})") from None
        passphrase = config.passphrase
        if isinstance(passphrase, str):
            passphrase = passphrase.encode()
        try:
            key = load_pem_private_key(key_pem, password=passphrase or None)
        except TypeError as exc:
            raise ConfigError("passphrase", str(exc)) from None
        except ValueError:
            raise ConfigError(
                "passphrase" if passphrase else "key",
                "does not decrypt the key" if passphrase else "could not be parsed",
            ) from None
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)  # type: ignore[arg-type]
        try:
            ctx.check_privatekey()
        except SSL.Error:
            raise ConfigError("key", "does not match the certificate in cert") from None
    elif server_side:
        raise ConfigError("cert", "a server needs a certificate and a key")
    ca = config._cache.get("ca")
    if ca is not None:
        store = ctx.get_cert_store()
        assert store is not None
        for cert in x509.load_pem_x509_certificates(ca):
            store.add_cert(crypto.X509.from_cryptography(cert))
    elif not server_side and not config.insecure_no_verify:
        ctx.set_default_verify_paths()
    if server_side:
        mode = _verify_mode(config)
    else:
        mode = SSL.VERIFY_NONE if config.insecure_no_verify else SSL.VERIFY_PEER
    if mode & SSL.VERIFY_PEER and not config.reject_unauthorized:
        # Verify but don't reject: the callback records the first failure
        # and lets the handshake go on.  Rejecting needs no Python callback:
        # OpenSSL stops at the first failure and keeps its code.
        ctx.set_verify(mode, _on_verify)
    else:
        ctx.set_verify(mode)
    _lib.SSL_CTX_set_info_callback(ctx._context, _INFO_CALLBACK)
    if config.alpn_protocols:
        protocols = [p.encode() for p in config.alpn_protocols]
        if server_side:
            ctx.set_alpn_select_callback(_alpn_selector(protocols))
        else:
            ctx.set_alpn_protos(protocols)
    if config.ecdh_curve is not None and not _lib_set_curves(ctx, config.ecdh_curve):
        raise ConfigError("ecdh_curve", f"unknown curve {config.ecdh_curve!r}")
    if server_side:
        ctx.set_session_id(config.session_id_context or b"securepair")
        # Every server needs one: without a callback that accepts the name,
        # OpenSSL does not acknowledge SNI or keep the name in the session,
        # and a resumed TLS 1.2 connection would have none.  A bare cffi
        # callback, as for the info callback: pyOpenSSL's wrapper looks the
        # connection up first, about 1% of a handshake, where only a config
        # that routes names needs the connection at all.
        callback = _ffi.callback("int (*)(SSL *, int *, void *)", _servername_callback(config))
        ctx._securepair_servername = callback  # type: ignore[attr-defined]  # kept alive
        _lib.SSL_CTX_set_tlsext_servername_callback(ctx._context, callback)
        if config.ocsp_staple is not None:
            ctx.set_ocsp_server_callback(_ocsp_server_callback(config.ocsp_staple))
    elif config.request_ocsp:
        ctx.set_ocsp_client_callback(_ocsp_client_callback)
    keylog = _keylog_callback(config)
    if keylog is not None:
        ctx.set_keylog_callback(keylog)
    return ctx


def _verify_mode(config: TLSConfig) -> int:
    """The OpenSSL verify mode of a server with ``config``."""
    if not config.request_cert:
        return SSL.VERIFY_NONE
    if config.reject_unauthorized:
        return SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    return SSL.VERIFY_PEER


def _lib_set_curves(ctx: SSL.Context, curve: str) -> bool:
    return bool(_lib.SSL_CTX_set1_curves_list(ctx._context, curve.encode("ascii")))


def _alpn_selector(ours: list[bytes]) -> Callable[[SSL.Connection, list[bytes]], bytes]:
    def select(conn: SSL.Connection, offered: list[bytes]) -> bytes:
        # Server preference, as the stdlib's server does; no overlap means
        # no ALPN (the application decides), not a failed handshake.
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    return select


#: SSL_TLSEXT_ERR_OK and SSL_TLSEXT_ERR_ALERT_FATAL.
_SNI_OK = 0
_SNI_FATAL = 2
#: The alert a failed sni_callback sends: internal_error, as on the stdlib.
_INTERNAL_ERROR = 80


def _servername_callback(config: TLSConfig) -> Callable[[Any, Any, Any], int]:
    def on_servername(ssl: Any, alert: Any, _arg: Any) -> int:
        # Routes are read at each handshake: add_context may come later.
        if config.sni_callback is None and not config._sni_contexts:
            return _SNI_OK
        conn = SSL.Connection._reverse_mapping.get(ssl)
        if conn is None:
            return _SNI_OK
        raw = conn.get_servername()
        if not raw:
            return _SNI_OK
        try:
            chosen = config.config_for_server_name(raw.decode("ascii", "replace"))
            if chosen is None:
                return _SNI_OK
            if isinstance(chosen, SSL.Context):
                wanted = _verify_mode(config)
                if chosen.get_verify_mode() != wanted:
                    raise ConfigError(
                        "sni_callback",
                        f"the context returned for {raw.decode('ascii', 'replace')!r} has "
                        f"verify mode {chosen.get_verify_mode()}, the server's config {wanted}; "
                        "OpenSSL keeps the verification a connection started with",
                    )
                conn.set_context(chosen)
            elif hasattr(chosen, "pyopenssl_context"):
                conn.set_context(chosen.pyopenssl_context(server_side=True))
            else:
                raise ConfigError(
                    "sni_callback",
                    "returned an ssl.SSLContext to a pyOpenSSL server; return a TLSConfig",
                )
        except Exception as exc:  # the application's callback failed
            # Kept for the handshake error to name; the handshake fails
            # with a fatal alert, as the stdlib's does.
            owner = _app(conn)
            if owner is not None:
                owner.callback_error = exc
            alert[0] = _INTERNAL_ERROR
            return _SNI_FATAL
        return _SNI_OK

    return on_servername


def _ocsp_server_callback(
    staple: Callable[[str | None], bytes | None] | bytes,
) -> Callable[[SSL.Connection, Any], bytes]:
    def on_ocsp(conn: SSL.Connection, _data: Any) -> bytes:
        if isinstance(staple, bytes):
            return staple
        raw = conn.get_servername()
        return staple(raw.decode("ascii", "replace") if raw else None) or b""

    return on_ocsp


def _ocsp_client_callback(conn: SSL.Connection, response: bytes, _data: Any) -> bool:
    owner = _app(conn)
    if owner is not None:
        owner.ocsp_response = response or None
    # Whether an OCSP response is good enough is the application's call; it
    # gets the bytes in an OCSPResponse event.
    return True


def _keylog_callback(config: TLSConfig) -> Callable[[SSL.Connection, bytes], None] | None:
    sinks: list[Callable[[bytes], None]] = []
    if config.keylog_callback is not None:
        sinks.append(config.keylog_callback)
    if config.keylog_filename is not None:
        path = config.keylog_filename

        def to_file(line: bytes) -> None:
            with open(path, "ab") as handle:
                handle.write(line + b"\n")

        sinks.append(to_file)
    if not sinks:
        return None

    def on_keylog(_conn: SSL.Connection, line: bytes) -> None:
        for sink in sinks:
            sink(line)

    return on_keylog


def make_connection(
    config: TLSConfig | SSL.Context,
    server_side: bool,
    server_hostname: str | None,
    session: Any,
) -> PyOpenSSLConnection:
    """A pyOpenSSL connection for ``config`` (a TLSConfig or a Context)."""
    if is_context(config):
        assert isinstance(config, SSL.Context)
        return PyOpenSSLConnection(
            config,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
    assert not isinstance(config, SSL.Context)
    verify = not config.insecure_no_verify and (not server_side or config.request_cert)
    connection = PyOpenSSLConnection(
        config.pyopenssl_context(server_side=server_side),
        server_side=server_side,
        server_hostname=server_hostname,
        session=session,
        reject_unauthorized=config.reject_unauthorized or not verify,
        verify_hostname=verify and config.check_hostname,
        watch_alerts=True,
        alpn_offered=bool(config.alpn_protocols),
    )
    if not server_side and config.request_ocsp:
        connection._conn.request_ocsp()
    return connection
