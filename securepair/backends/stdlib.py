"""The stdlib backend: ``ssl.SSLObject`` between two ``ssl.MemoryBIO``.

The four operations and what they raise:

* ``do_handshake()`` -- ``SSLWantReadError`` while it needs the peer's bytes.
* ``read(n, buffer)`` -- at most one record's worth; ``SSLWantReadError``
  when no complete record is buffered; 0 or ``SSLZeroReturnError`` once the
  peer's close_notify is read; ``SSLEOFError`` after ``write_eof()`` on the
  incoming BIO without a close_notify (a ragged EOF).
* ``write(data)`` -- into a memory BIO it never blocks and encrypts all of
  ``data``.  ``write(b"")`` is never called: to OpenSSL it is meaningless and
  some versions report it as EOF.
* ``unwrap()`` -- sends close_notify, then immediately calls ``SSL_shutdown``
  a second time to look for the peer's.  That second call *reads records*,
  and an application-data record in the incoming BIO makes it fail with
  ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``.  So :meth:`send_close_notify`
  takes the unread bytes out of the BIO, calls ``unwrap()``, and puts them
  back; they are then read as data, as TLS 1.3 half-close intends.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

from ..alerts import plaintext_alert, received_alert, sent_alert_for_reason
from ..errors import (
    CertificateVerificationError,
    TLSAlertReceivedError,
    TLSError,
)
from ..verify_codes import VERIFICATION_DISABLED, VERIFY_ALERTS, node_code
from .base import CLOSED, EOF, WANT_READ, TLSConnection

_WantRead = ssl.SSLWantReadError
_ZeroReturn = ssl.SSLZeroReturnError


#: ``context.verify_mode`` as a plain int, read from the C context: the
#: ``ssl.SSLContext`` property builds a ``VerifyMode`` member on every read
#: (half a microsecond, once per handshake).
_verify_mode: Any = getattr(
    getattr(ssl.SSLContext.__mro__[1], "verify_mode", None),
    "__get__",
    lambda context: context.verify_mode,
)


#: The C half of SSLContext.wrap_bio (SSLObject._create calls it), if this
#: Python has it.
_wrap_bio: Any = getattr(ssl.SSLContext.__mro__[1], "_wrap_bio", None)
_new_sslobject = ssl.SSLObject.__new__


@functools.lru_cache(maxsize=256)
def _a_label(name: str | None) -> str | None:
    """``server_hostname`` as ``SSLContext._encode_hostname`` passes it to C:
    the IDNA A-label (ASCII names unchanged)."""
    if name is None or name.isascii():
        return name
    return name.encode("idna").decode("ascii")


class StdlibConnection(TLSConnection):
    """A TLS connection driven through ``ssl.SSLObject``."""

    name = "stdlib"

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        session: Any = None,
        plain: bool = False,
    ) -> None:
        # plain: TLSConfig made the context (the stock sslobject_class), so
        # its wrap_bio can be done here, more cheaply, unless it is of a
        # subclass after all.
        self._in = self.incoming = ssl.MemoryBIO()
        self._out = self.outgoing = ssl.MemoryBIO()
        self._server_side = server_side
        if plain and _wrap_bio is not None and type(context) is ssl.SSLContext:
            # What SSLContext.wrap_bio and SSLObject._create do, without
            # their two Python frames and the idna codec: 1% of a handshake
            # pair, measured.
            obj: Any = _new_sslobject(ssl.SSLObject)
            self._obj: ssl.SSLObject = obj
            obj._sslobj = _wrap_bio(
                context,
                self._in,
                self._out,
                server_side=server_side,
                server_hostname=None if server_side else _a_label(server_hostname),
                owner=obj,
                session=session,
            )
        else:
            self._obj = context.wrap_bio(
                self._in,
                self._out,
                server_side=server_side,
                server_hostname=None if server_side else server_hostname,
                session=session,
            )
        # The hot calls go to the C object under SSLObject: its read, write
        # and do_handshake only pass their arguments on, at the cost of a
        # Python frame per record.  Where there is no such object (another
        # Python), the public methods; and an application's own
        # sslobject_class may override them, so then those are called.
        raw: Any = self._obj
        if type(raw) is ssl.SSLObject:
            raw = getattr(raw, "_sslobj", None) or raw
        self._raw = raw
        # read_into is the C read itself while nothing is held back (see
        # send_close_notify); the method of the same name takes over then.
        self._read = self.read_into = raw.read  # type: ignore[method-assign]
        self._write = self.raw_write = raw.write  # type: ignore[method-assign]
        self._handshake = raw.do_handshake
        # Never true here (no renegotiation), but the engine asks after every
        # batch of records: an instance attribute is the quicker answer.
        self.blocked = False
        # Once our close_notify is out, OpenSSL sends no further alert, so a
        # later failure must not claim one (found by fuzz/fuzz_pair.py).
        self._close_sent = False
        # Decrypted bytes taken out of OpenSSL before close (see
        # send_close_notify); read_into hands them out first.
        self._held = b""
        self.alerts: list[tuple[str, bool, bool]] = []
        self.is_server = server_side

    # -- TLS operations ---------------------------------------------------

    def do_handshake(self) -> bool:
        before = self._out.pending
        try:
            self._handshake()
        except _WantRead:
            return False
        except ssl.SSLError as exc:
            # OpenSSL sends no alert for some failures (a first record that
            # is not TLS at all); only claim one if something was written.
            error = self._translate(exc, wrote=self._out.pending > before)
            # An exception in the application's sni_callback reaches OpenSSL
            # only as CALLBACK_FAILED; TLSConfig kept it: say what it was.
            app_error = getattr(self._obj, "_securepair_sni_error", None)
            try:
                if app_error is not None:
                    error.args = (f"{error.args[0]}; sni_callback raised {app_error!r}",)
                    raise error from app_error
                raise error from exc
            finally:
                # The traceback keeps this frame (and, through f_back, the
                # pair's): a local naming the error would make a cycle.
                del error, app_error
        return True

    def read_into(self, size: int, view: memoryview) -> int:
        # Only while decrypted bytes are held back; otherwise the instance
        # attribute of this name, the C read, answers.
        held = self._held
        if not held:
            self.read_into = self._read  # type: ignore[method-assign]
            return self._read(size, view)  # type: ignore[no-any-return]
        count = min(size, len(held))
        view[:count] = held[:count]
        self._held = held[count:]
        return count

    raw_read_errors = (ssl.SSLError,)

    def read_error(self, exc: BaseException) -> int:
        if isinstance(exc, _WantRead):
            return WANT_READ
        if isinstance(exc, _ZeroReturn):
            return CLOSED
        if isinstance(exc, ssl.SSLEOFError):
            return EOF
        assert isinstance(exc, ssl.SSLError)
        error = self._translate(exc, wrote=not self._close_sent)
        error.__cause__ = exc
        try:
            raise error
        finally:
            del error  # the traceback keeps this frame

    def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._write(data)
        except ssl.SSLError as exc:
            raise self._translate(exc) from exc

    raw_write_errors = (ssl.SSLError,)

    def write_error(self, exc: BaseException) -> TLSError:
        assert isinstance(exc, ssl.SSLError)
        error = self._translate(exc)
        error.__cause__ = exc
        return error

    def send_close_notify(self) -> None:
        self._close_sent = True
        # At its buffer limit the engine may have read only part of a
        # record; OpenSSL holds the rest, decrypted, and unwrap()'s second
        # SSL_shutdown would fail on it (APPLICATION_DATA_AFTER_CLOSE_NOTIFY).
        # Take it out first; read_into returns it before anything newer.
        pending = self._obj.pending()
        if pending:
            self._held += self._obj.read(pending)
            # The method hands out what is held before anything newer.
            self.__dict__.pop("read_into", None)
        unread = self._in.read()
        try:
            self._obj.unwrap()
        except (_WantRead, _ZeroReturn):
            pass
        except ssl.SSLError as exc:
            raise self._translate(exc) from exc
        finally:
            if unread:
                self._in.write(unread)

    # -- errors -----------------------------------------------------------

    def _translate(self, exc: ssl.SSLError, *, wrote: bool = True) -> TLSError:
        """Our typed error for an ``ssl.SSLError``; the alert we sent, if
        any, is left for the engine to flush first."""
        reason: str | None = exc.reason  # None in practice, whatever typeshed says
        if reason is None and "internal error" in str(exc):
            # ERR_R_INTERNAL_ERROR has no name in the ssl module's table;
            # OpenSSL sends internal_error for it (a short TLS 1.2 AEAD
            # record, a plaintext record once encryption is on).
            reason = "INTERNAL_ERROR"
        library = exc.library
        peer_alert = received_alert(reason)
        if peer_alert is not None:
            return TLSAlertReceivedError(
                f"peer sent a fatal {peer_alert} alert ({reason})",
                library=library,
                reason=reason,
                alert=peer_alert,
                alert_sent=False,
            )
        # Look at what we are about to send (and put it back): before
        # encryption starts, the alert is readable in the clear.
        pending = self._out.read()
        self._out.write(pending)
        found = plaintext_alert(pending)
        alert = found[0] if found else None
        if isinstance(exc, ssl.SSLCertVerificationError):
            verify_code = exc.verify_code
            code = node_code(verify_code)
            return CertificateVerificationError(
                f"certificate verify failed: {exc.verify_message} ({code})",
                code=code,
                verify_code=verify_code,
                library=library,
                reason=reason,
                alert=alert or VERIFY_ALERTS.get(verify_code, "certificate_unknown"),
                alert_sent=True,
            )
        if alert is None and wrote:
            # Encrypted (TLS 1.3 after the ServerHello): named from the reason.
            alert = sent_alert_for_reason(reason)
        # Without a reason code (OpenSSL's "internal error"), the message
        # is all there is to show (found by the tamper tests).
        detail = f"{library}: {reason}" if library and reason else str(reason or exc)
        message = f"TLS failed: {detail}"
        if alert:
            message += f" (sent {alert} alert)"
        return TLSError(
            message, library=library, reason=reason, alert=alert, alert_sent=bool(alert)
        )

    # -- details ----------------------------------------------------------

    def version(self) -> str:
        return self._obj.version() or ""

    def cipher(self) -> tuple[str, str, int]:
        found = self._obj.cipher()
        if found is None:
            return ("", "", 0)
        return found

    def alpn_protocol(self) -> str | None:
        return self._obj.selected_alpn_protocol()

    def server_name(self) -> str | None:
        if self._server_side:
            return getattr(self._obj, "_securepair_server_name", None)
        return self._obj.server_hostname

    def peer_certificate_der(self) -> bytes | None:
        return self._obj.getpeercert(binary_form=True)

    def peer_chain_der(self) -> list[bytes] | None:
        # ssl.SSLObject.get_unverified_chain() exists from Python 3.13.
        getter = getattr(self._obj, "get_unverified_chain", None)
        if getter is None:
            return None
        chain = getter()
        return [c if isinstance(c, bytes) else c.public_bytes(ssl.Encoding.DER) for c in chain]  # type: ignore[attr-defined]

    def verification(self) -> tuple[bool, str | None]:
        mode = self._obj.context.verify_mode
        has_cert = self._obj.getpeercert(binary_form=True) is not None
        if mode == ssl.CERT_NONE:
            # A server that did not ask has nothing to report; a client that
            # turned verification off has, and says so.
            return False, None if self._server_side else VERIFICATION_DISABLED
        # With CERT_REQUIRED / CERT_OPTIONAL the stdlib fails the handshake on
        # a bad certificate, so one that is here verified.
        if has_cert:
            return True, None
        return False, "NO_PEER_CERTIFICATE"

    def handshake_details(
        self,
    ) -> tuple[str, str, str | None, str | None, bool, str | None, bytes | None, bool]:
        raw = self._raw
        der = raw.getpeercert(True)
        if _verify_mode(raw.context) == ssl.CERT_NONE:
            authorized, error = False, None if self._server_side else VERIFICATION_DISABLED
        elif der is not None:
            authorized, error = True, None
        else:
            authorized, error = False, "NO_PEER_CERTIFICATE"
        found = raw.cipher()
        return (
            raw.version() or "",
            found[0] if found else "",
            raw.selected_alpn_protocol(),
            getattr(self._obj, "_securepair_server_name", None)
            if self._server_side
            else raw.server_hostname,
            authorized,
            error,
            der,
            raw.session_reused,
        )

    def session(self) -> Any:
        return self._obj.session

    def session_reused(self) -> bool:
        return self._obj.session_reused

    def tls_unique(self) -> bytes | None:
        if self._obj.version() != "TLSv1.2":
            return None
        return self._obj.get_channel_binding("tls-unique")
