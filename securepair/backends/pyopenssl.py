"""The pyOpenSSL backend: ``OpenSSL.SSL.Connection(context, None)``.

With no socket, a pyOpenSSL connection keeps its records in two memory BIOs:
``bio_write()`` feeds the incoming one, ``bio_read()`` drains the outgoing
one, ``recv_into()`` and ``send()`` move cleartext.  Its wheels bundle their
own (newer) OpenSSL, so this backend is also a second OpenSSL version.

What it gives that ``ssl.SSLObject`` cannot:

* verify-but-don't-reject: a verify callback that records OpenSSL's verdict
  (Node's ``authorizationError``) and lets the handshake go on;
* the peer's full chain and the verified chain;
* RFC 5705 keying material export, the Finished messages;
* key log lines through a callback, OCSP stapling on both sides;
* TLS 1.2 renegotiation on request;
* every alert, sent or received, from OpenSSL's info callback;
* cheap sessions: no DER round trip to read one.

Two things pyOpenSSL does not expose are reached through its cffi binding:
the number of bytes waiting in each memory BIO (``BIO_get_mem_data``) and
reading back the unconsumed bytes of the incoming BIO (``BIO_read``), which
``unwrap()`` needs to return the bytes that followed close_notify.
"""

from __future__ import annotations

import functools
import ipaddress
import weakref
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from ..alerts import ALERT_NAMES, received_alert, sent_alert_for_reason
from ..errors import (
    CertificateVerificationError,
    ConfigError,
    TLSAlertReceivedError,
    TLSError,
)
from ..verify_codes import VERIFICATION_DISABLED, VERIFY_ALERTS, node_code
from .base import CLOSED, EOF, WANT_READ, TLSConnection

_WantRead = SSL.WantReadError
_ZeroReturn = SSL.ZeroReturnError
_SysCallError = SSL.SysCallError
_Error = SSL.Error
_SSL_ERROR_WANT_READ = _lib.SSL_ERROR_WANT_READ

_SSL_CB_ALERT = _lib.SSL_CB_ALERT
_SSL_CB_READ = _lib.SSL_CB_READ
_SSL_CB_WRITE = _lib.SSL_CB_WRITE


def is_context(obj: object) -> bool:
    """True if ``obj`` is an ``OpenSSL.SSL.Context``."""
    return isinstance(obj, SSL.Context)


#: cffi buffers for bytes about to be overwritten: no need to zero them.
_uncleared = _ffi.new_allocator(should_clear_after_alloc=False)


class _BioQueue:
    """One of a pyOpenSSL connection's memory BIOs, as a ``MemoryBIO``."""

    __slots__ = ("_bio", "_conn")

    def __init__(self, conn: SSL.Connection, incoming: bool) -> None:
        self._conn = conn
        self._bio = conn._into_ssl if incoming else conn._from_ssl

    @property
    def pending(self) -> int:
        return int(_lib.BIO_get_mem_data(self._bio, _ffi.NULL))

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        # BIO_write itself: pyOpenSSL's bio_write adds type checks, and a
        # memory BIO takes everything or fails only when out of memory.
        with _ffi.from_buffer(data) as buffer:
            count: int = _lib.BIO_write(self._bio, buffer, len(buffer))
        if count < 0 or count != len(buffer):
            raise MemoryError("BIO_write failed")
        return count

    def read(self, size: int = -1, /) -> bytes:
        available: int = _lib.BIO_get_mem_data(self._bio, _ffi.NULL)
        if size < 0 or size > available:
            size = available
        if not size:
            return b""
        buffer = _uncleared("char[]", size)
        count = _lib.BIO_read(self._bio, buffer, size)
        data: bytes = _ffi.buffer(buffer, max(count, 0))[:]
        return data

    def write_eof(self) -> None:
        self._conn.bio_shutdown()


#: OpenSSL's long library names, as the stdlib's ``SSLError.library`` spells
#: them, so an error reads the same whichever backend raised it.
_LIBRARIES = {
    "SSL routines": "SSL",
    "x509 certificate routines": "X509",
    "PEM routines": "PEM",
    "asn1 encoding routines": "ASN1",
    "BIO routines": "BIO",
    "system library": "SYS",
    "digital envelope routines": "EVP",
    "Provider routines": "PROV",
}


def _reason(exc: BaseException) -> tuple[str | None, str | None]:
    """(library, REASON_CODE) from a pyOpenSSL error, in the stdlib's
    spelling (``"WRONG_VERSION_NUMBER"``)."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args:
        # OpenSSL 3 may stack a provider's error under the TLS one; the TLS
        # layer's entry is the one that says what happened to the connection.
        entries = [e for e in args if isinstance(e, tuple) and len(e) == 3]
        ssl_entries = [e for e in entries if e[0] == "SSL routines"]
        entry = ssl_entries[0] if ssl_entries else (entries[0] if entries else None)
        if entry is not None:
            library, _func, reason = entry
            library = _LIBRARIES.get(library, library) if library else None
            return library, reason.upper().replace(" ", "_") if reason else None
    return None, None


class PyOpenSSLConnection(TLSConnection):
    """A TLS connection driven through ``OpenSSL.SSL.Connection``."""

    name = "pyopenssl"

    def __init__(
        self,
        context: SSL.Context,
        *,
        server_side: bool,
        server_hostname: str | None,
        session: Any = None,
        reject_unauthorized: bool = True,
        verify_hostname: bool = True,
        watch_alerts: bool = False,
        alpn_offered: bool = True,
    ) -> None:
        self._failed = False
        #: True while writes wait for a renegotiation to progress.
        self.blocked = False
        self._blocked: list[bytes] = []
        conn = SSL.Connection(context, None)
        self._conn = conn
        # Application callbacks (verify, ALPN, OCSP) run inside a read only
        # when a renegotiation can happen; only then must a successful read
        # ask pyOpenSSL for what they left behind.
        self._ssl = conn._ssl
        self._callbacks_in_reads = not _lib.SSL_get_options(self._ssl) & SSL.OP_NO_RENEGOTIATION
        #: The context, if it has none of pyOpenSSL's callback helpers (see
        #: _no_callback_helpers); None otherwise.
        self._helper_free: SSL.Context | None = context if self._no_callback_helpers() else None
        self._server_side = server_side
        self.is_server = server_side
        self._hostname = server_hostname
        self._reject = reject_unauthorized
        #: (X509_V_ERR number, depth) of the first verification failure.
        self.verify_error: tuple[int, int] | None = None
        #: Alerts seen by the info callback: (description, fatal, sent).
        self.alerts: list[tuple[str, bool, bool]] = []
        #: True if the context reports alerts through our info callback.
        self.reports_alerts = watch_alerts
        #: False for a client that offered no ALPN (then none can have been
        #: agreed); servers ask their context (see _alpn_possible).
        self.alpn_offered = alpn_offered
        self.ocsp_response = None
        #: An exception raised by an application callback during the
        #: handshake, re-raised as the cause of the failure.
        self.callback_error: BaseException | None = None
        # Weakly: the connection must not keep its owner alive, or the two
        # would be a reference cycle that only the cycle collector frees,
        # OpenSSL's state with it.
        conn.set_app_data(weakref.ref(self))
        if server_side:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
            if server_hostname:
                encoded = _host_name_bytes(server_hostname)
                if encoded is not None:
                    conn.set_tlsext_host_name(encoded)
                if verify_hostname:
                    # OpenSSL checks the name (or the address) in the chain
                    # verification itself, so that a failure has its own
                    # X509_V_ERR code and needs no Python verify callback.
                    # It refuses a name it cannot match by setting no check
                    # at all: that must never pass silently.
                    param = _lib.SSL_get0_param(conn._ssl)
                    if encoded is not None:
                        checked = _lib.X509_VERIFY_PARAM_set1_host(param, encoded, 0)
                    else:
                        packed = ipaddress.ip_address(server_hostname).packed
                        checked = _lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
                    if not checked:
                        raise ConfigError(
                            "server_hostname",
                            f"{server_hostname!r} is not a host name OpenSSL can verify",
                        ) from None
            if session is not None:
                conn.set_session(session)
        self.incoming = _BioQueue(conn, True)
        self.outgoing = _BioQueue(conn, False)

    # -- TLS operations ---------------------------------------------------

    def _no_callback_helpers(self) -> bool:
        """True if the context has none of pyOpenSSL's helpers that keep an
        exception raised in a callback for the next call to raise: then a
        result can be read without pyOpenSSL's error path, which raises an
        exception for want-read too."""
        ctx = self._conn._context
        return (
            ctx._verify_helper is None
            and ctx._alpn_select_helper is None
            and ctx._ocsp_helper is None
        )

    def do_handshake(self) -> bool:
        ssl = self._ssl
        result = _lib.SSL_do_handshake(ssl)
        # The context is the one found free of helpers (a context cannot
        # change once used), unless SNI switched it: then ask again.
        if result == 1:
            if self._conn._context is self._helper_free or self._no_callback_helpers():
                return True
        elif _lib.SSL_get_error(ssl, result) == _SSL_ERROR_WANT_READ and (
            self._conn._context is self._helper_free or self._no_callback_helpers()
        ):
            return False
        try:
            self._conn._raise_ssl_error(ssl, result)
        except _WantRead:
            return False
        except _Error as exc:
            raise self._translate(exc) from exc
        return True

    def read_into(self, size: int, view: memoryview) -> int:
        # SSL_read straight into the caller's buffer.  pyOpenSSL's recv_into
        # reads into a new temporary buffer of len(view) bytes and copies
        # from it: an allocation (an mmap/munmap pair when the room is
        # large) and a copy per record.
        conn = self._conn
        ssl = self._ssl
        try:
            with _ffi.from_buffer(view, require_writable=True) as buf:
                result: int = _lib.SSL_read(ssl, buf, size)
            if (
                result <= 0
                and not self._callbacks_in_reads
                and _lib.SSL_get_error(ssl, result) == _SSL_ERROR_WANT_READ
            ):
                # The usual end of a batch, without an exception.
                return WANT_READ
            if result <= 0 or self._callbacks_in_reads:
                # As recv_into does; after a successful read it matters only
                # for what a callback left behind during a renegotiation.
                conn._raise_ssl_error(ssl, result)
            return result if result > 0 else WANT_READ
        except _WantRead:
            return WANT_READ
        except _ZeroReturn:
            return CLOSED
        except _SysCallError as exc:
            if exc.args and exc.args[0] == -1:
                return EOF
            raise self._translate(exc) from exc
        except _Error as exc:
            raise self._translate(exc) from exc

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.blocked:
            self._blocked.append(bytes(data))
            return
        view = memoryview(data).cast("B")
        send = self._conn.send
        try:
            while view:
                view = view[send(view) :]
        except _WantRead:
            # A renegotiation is under way: OpenSSL writes again once the
            # peer's handshake messages have been read.
            self._blocked.append(bytes(view))
            self.blocked = True
        except _Error as exc:
            raise self._translate(exc) from exc

    raw_write = write  # raises only our errors

    def retry_blocked(self) -> None:
        """Send what a renegotiation held back, if it can go now."""
        waiting, self._blocked = self._blocked, []
        self.blocked = False
        for chunk in waiting:
            self.write(chunk)

    def send_close_notify(self) -> None:
        try:
            self._conn.shutdown()
        except _Error as exc:
            raise self._translate(exc) from exc

    def renegotiate(self) -> None:
        """Start a renegotiation (TLS 1.2); the handshake runs as data flows."""
        try:
            if not self._conn.renegotiate():
                raise TLSError("renegotiation refused by OpenSSL (TLS 1.3 has none)")
            self._conn.do_handshake()
        except _WantRead:
            pass
        except _Error as exc:
            raise self._translate(exc) from exc

    def disable_renegotiation(self) -> None:
        """Refuse renegotiation from now on (Node's disableRenegotiation())."""
        self._conn.set_options(SSL.OP_NO_RENEGOTIATION)

    def __del__(self) -> None:
        # OpenSSL, freeing a connection that never sent close_notify, marks
        # its session not resumable (ssl_clear_bad_session), which also
        # spoils the session the application was handed for resumption.  A
        # connection dropped without failing is no reason to distrust its
        # session, so mark it shut down first.  A failed connection keeps
        # OpenSSL's behaviour.
        conn = getattr(self, "_conn", None)
        if conn is not None and not self._failed:
            conn.set_shutdown(conn.get_shutdown() | SSL.SENT_SHUTDOWN)

    # -- errors -----------------------------------------------------------

    def _translate(self, exc: BaseException) -> TLSError:
        self._failed = True
        library, reason = _reason(exc)
        cause = self.callback_error
        peer_alert = received_alert(reason)
        sent = [a for a in self.alerts if a[2] and a[1]]
        if peer_alert is not None:
            return TLSAlertReceivedError(
                f"peer sent a fatal {peer_alert} alert",
                library=library,
                reason=reason,
                alert=peer_alert,
                alert_sent=False,
            )
        if reason == "CERTIFICATE_VERIFY_FAILED" or (
            self.verify_error is not None and self._reject
        ):
            verify_code = (
                self.verify_error[0]
                if self.verify_error
                else int(_lib.SSL_get_verify_result(self._conn._ssl))
            )
            code = node_code(verify_code)
            message = _lib.X509_verify_cert_error_string(verify_code)
            text = _ffi.string(message).decode("ascii", "replace") if message else code
            return CertificateVerificationError(
                f"certificate verify failed: {text} ({code})",
                code=code,
                verify_code=verify_code,
                library=library,
                reason=reason,
                alert=sent[0][0] if sent else VERIFY_ALERTS.get(verify_code, "certificate_unknown"),
                alert_sent=True,
            )
        if sent:
            alert: str | None = sent[0][0]
        elif self.reports_alerts:
            # The info callback sees every alert written, so none was (after
            # our close_notify OpenSSL sends none; found by fuzz/fuzz_pair.py).
            alert = None
        else:
            alert = sent_alert_for_reason(reason)
        if isinstance(exc, _SysCallError):
            message = f"TLS failed: {exc}"
        else:
            message = f"TLS failed: {library}: {reason}" if library else f"TLS failed: {exc}"
        if alert:
            message += f" (sent {alert} alert)"
        error = TLSError(
            message, library=library, reason=reason, alert=alert, alert_sent=bool(alert)
        )
        if cause is not None:
            # An exception in an application callback (sni_callback) reaches
            # OpenSSL only as CALLBACK_FAILED: say what it was.
            error.args = (f"{message}; sni_callback raised {cause!r}",)
            error.__cause__ = cause
        return error

    # -- callbacks (called by the context's callbacks) ----------------------

    def on_info(self, where: int, ret: int) -> None:
        """OpenSSL info callback: record alerts."""
        if where & _SSL_CB_ALERT:
            level, code = ret >> 8, ret & 0xFF
            self.alerts.append(
                (ALERT_NAMES.get(code, f"alert_{code}"), level == 2, bool(where & _SSL_CB_WRITE))
            )

    def on_verify(self, ok: int, errnum: int, depth: int, cert: Any) -> bool:
        """OpenSSL verify callback: record the first failure; reject it only
        when configured to."""
        if not ok and self.verify_error is None:
            self.verify_error = (errnum, depth)
        return bool(ok) or not self._reject

    # -- details ----------------------------------------------------------

    def version(self) -> str:
        return self._conn.get_protocol_version_name()

    def cipher(self) -> tuple[str, str, int]:
        conn = self._conn
        return (
            conn.get_cipher_name() or "",
            conn.get_cipher_version() or "",
            conn.get_cipher_bits() or 0,
        )

    def alpn_protocol(self) -> str | None:
        chosen = self._conn.get_alpn_proto_negotiated()
        return chosen.decode("latin-1") if chosen else None

    def server_name(self) -> str | None:
        if self._server_side:
            name = self._conn.get_servername()
            return name.decode("ascii", "replace") if name else None
        return self._hostname

    def peer_certificate_der(self) -> bytes | None:
        return _peer_certificate_der(self._ssl)

    def peer_chain_der(self) -> list[bytes] | None:
        from cryptography.hazmat.primitives.serialization import Encoding

        chain = self._conn.get_verified_chain(as_cryptography=True)
        if not chain:
            chain = self._conn.get_peer_cert_chain(as_cryptography=True)
        if not chain:
            return None
        ders = [c.public_bytes(Encoding.DER) for c in chain]
        # On a server OpenSSL's peer chain omits the leaf; put it first.
        leaf = self.peer_certificate_der()
        if leaf is not None and ders[0] != leaf:
            ders.insert(0, leaf)
        return ders

    def unverified_chain_der(self) -> list[bytes] | None:
        """The chain as the peer sent it, leaf first."""
        from cryptography.hazmat.primitives.serialization import Encoding

        chain = self._conn.get_peer_cert_chain(as_cryptography=True)
        if not chain:
            return None
        ders = [c.public_bytes(Encoding.DER) for c in chain]
        leaf = self.peer_certificate_der()
        if leaf is not None and ders[0] != leaf:
            ders.insert(0, leaf)
        return ders

    def verification(self, has_certificate: bool | None = None) -> tuple[bool, str | None]:
        # The connection's own mode: a context switched to by SNI verifies
        # alike (TLSConfig refuses routes that do not), and OpenSSL keeps
        # the mode the connection started with anyway.
        mode = _lib.SSL_get_verify_mode(self._ssl)
        if not mode & SSL.VERIFY_PEER:
            return False, None if self._server_side else VERIFICATION_DISABLED
        if self.verify_error is not None:
            return False, node_code(self.verify_error[0])
        if has_certificate is None:
            has_certificate = self._conn.get_peer_certificate() is not None
        if not has_certificate:
            return False, "NO_PEER_CERTIFICATE"
        result = int(_lib.SSL_get_verify_result(self._conn._ssl))
        if result != 0:
            return False, node_code(result)
        return True, None

    def handshake_now(self) -> tuple[dict[str, Any], Callable[[], dict[str, Any]] | None]:
        # OpenSSL asked directly: pyOpenSSL's getters were a Python frame or
        # three each, twice a handshake.  Everything but the certificate's
        # DER, which is most of the cost (a BIO and an encoding, eight cffi
        # calls): the event encodes it, when asked, from a reference of its
        # own to OpenSSL's X509.
        ssl = self._ssl
        x509 = _lib.SSL_get_peer_certificate(ssl)  # a new reference
        authorized, error = self.verification(x509 != _ffi.NULL)
        if self._server_side:
            raw_name = _lib.SSL_get_servername(ssl, _lib.TLSEXT_NAMETYPE_host_name)
            name = _ffi.string(raw_name).decode("ascii", "replace") if raw_name else None
        else:
            name = self._hostname
        version = _VERSION_NAMES.get(_lib.SSL_version(ssl))
        known: dict[str, Any] = {
            "version": version or _ffi.string(_lib.SSL_get_version(ssl)).decode("ascii"),
            "cipher": _cipher_name(_lib.SSL_get_current_cipher(ssl)),
            "alpn_protocol": self.alpn_protocol() if self._alpn_possible() else None,
            "server_name": name,
            "authorized": authorized,
            "authorization_error": error,
            "session_reused": bool(_lib.SSL_session_reused(ssl)),
        }
        if x509 == _ffi.NULL:
            known["peer_certificate_der"] = None
            return known, None
        return known, functools.partial(_der_field, _ffi.gc(x509, _lib.X509_free))

    def _alpn_possible(self) -> bool:
        """False where no ALPN can have been agreed, so that OpenSSL need
        not be asked (each cffi call takes the GIL back afterwards): a
        client that offered none, a server whose context (the one SNI
        chose, which does the selecting) has no ALPN callback."""
        if self._server_side:
            return self._conn._context._alpn_select_helper is not None
        return self.alpn_offered

    def session(self) -> Any:
        return self._conn.get_session()

    def session_reused(self) -> bool:
        return bool(_lib.SSL_session_reused(self._conn._ssl))

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 / RFC 8446 7.5 exporter."""
        return self._conn.export_keying_material(label, length, context)

    def finished(self) -> tuple[bytes | None, bytes | None]:
        """(our Finished, the peer's Finished) verify_data."""
        return self._conn.get_finished(), self._conn.get_peer_finished()


@functools.lru_cache(maxsize=1024)
def _host_name_bytes(name: str) -> bytes | None:
    """The SNI bytes for a server name, or None for an IP address (which
    is not sent as SNI).  Cached: a client connects to the same few names
    again and again."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _encode_host(name)
    return None


#: TLS protocol numbers OpenSSL's SSL_version() gives, by their names.
_VERSION_NAMES = {0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


@functools.lru_cache(maxsize=64)
def _cipher_name(cipher: Any) -> str:
    """The name of an SSL_CIPHER (OpenSSL's ciphers are static tables, so
    the pointer names one for good)."""
    if cipher == _ffi.NULL:
        return ""
    name: bytes = _ffi.string(_lib.SSL_CIPHER_get_name(cipher))
    return name.decode("ascii")


def _peer_certificate_der(ssl: Any) -> bytes | None:
    """The peer's leaf certificate in DER, straight from OpenSSL's X509: a
    detour through cryptography's object parses the certificate, three
    times the cost, on every handshake."""
    x509 = _lib.SSL_get_peer_certificate(ssl)  # a new reference
    if x509 == _ffi.NULL:
        return None
    try:
        return _x509_der(x509)
    finally:
        _lib.X509_free(x509)


def _der_field(x509: Any) -> dict[str, Any]:
    """HandshakeComplete's loader: the DER of an X509 the event owns (no
    connection involved, so any thread may ask)."""
    return {"peer_certificate_der": _x509_der(x509)}


def _x509_der(x509: Any) -> bytes:
    bio = _lib.BIO_new(_lib.BIO_s_mem())
    try:
        if bio == _ffi.NULL or not _lib.i2d_X509_bio(bio, x509):
            raise MemoryError("could not encode the peer certificate")
        data = _ffi.new("char **")
        size = _lib.BIO_get_mem_data(bio, data)
        der: bytes = _ffi.buffer(data[0], size)[:]
        return der
    finally:
        if bio != _ffi.NULL:
            _lib.BIO_free(bio)


def _encode_host(name: str) -> bytes:
    # The idna codec is slow; nearly every host name is ASCII already.
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna")
