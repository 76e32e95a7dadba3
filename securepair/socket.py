"""TLS over a connected ``socket.socket``, blocking or not: :class:`TLSSocket`.

Theory of operation
===================

:func:`wrap_socket` upgrades a connected stream socket, on the client or the
server side, into a :class:`TLSSocket`: an object with the public API of
``ssl.SSLSocket`` (``recv``, ``recv_into``, ``send``, ``sendall``,
``makefile``, ``settimeout``, ``fileno``, ``shutdown``, ``close``,
``unwrap``, ``version()``, ``cipher()``, ``getpeercert()``...) plus the
pair's details and events.  Bytes the application already read from the
socket before the upgrade (a STARTTLS exchange, a PROXY header followed by
a ClientHello in the same segment) are passed as ``initial_data=``; they
are TLS input, never cleartext.

The socket is not subclassed: a :class:`TLSSocket` holds the plain socket
and :meth:`TLSSocket.unwrap` hands that very object back, with the bytes
that followed the peer's close_notify.  For stdlib code that takes an
``ssl.SSLContext`` (``http.client``, ``urllib.request``, ``smtplib``,
``imaplib``, ``ftplib``), :class:`SocketContext` has the ``wrap_socket``
method they call.

One loop
--------
Every operation is the same loop around the pair: send what the pair has
to send; if the application needs bytes the pair does not have, read from
the socket into a reusable buffer and feed them in.  A read takes up to
:data:`~securepair._adapters.RECV_SIZE` bytes at once, so one system call
usually carries many records, all decrypted in one go; ``recv`` then copies
out of the pair's buffer.  Because of that, decrypted bytes can be waiting
in the pair while the socket has nothing to read: code that uses
``selectors`` must check :meth:`TLSSocket.pending` before waiting, exactly
as with ``ssl.SSLSocket``.

Timeouts and non-blocking use
-----------------------------
The socket's timeout is the :class:`TLSSocket`'s timeout, with the same
three modes:

* ``None`` (blocking): the plain socket blocks; every call goes straight to
  the kernel.
* ``0.0`` (non-blocking): the plain socket does not block; when the kernel
  has nothing to read or no room to write, the call raises
  ``ssl.SSLWantReadError`` / ``ssl.SSLWantWriteError``, as ``SSLSocket``
  does.  Wait for the file descriptor with ``selectors`` and call again.
  A read can raise want-write (the handshake needs to send), a write can
  raise want-read (the handshake needs to receive).
* ``t > 0``: the plain socket is switched to non-blocking mode and the
  adapter waits with ``poll()``; ``t`` bounds the whole call (one deadline
  per call, as the stdlib does), and the call raises ``TimeoutError``.

``send`` encrypts its data into the pair before it can know whether the
kernel will take the result.  When it cannot send everything (want-write,
or a timeout), the encrypted rest is kept and the call raises; as with
OpenSSL, *the same call must be repeated* with the same data, and then
returns the count of the first attempt.  ``sendall`` cannot report how far
it got when it is interrupted (neither can ``socket.sendall``); after that
the write side is broken on purpose: further writes raise
``BrokenPipeError`` and the socket closes without close_notify, so the peer
sees a truncated stream as an error, never as a clean end.

Threads
-------
A :class:`TLSSocket` is used by one thread at a time, like the pair under
it: a receive in one thread and a send in another can interleave their
changes to the same TLS state.  (Python's ``SSLSocket`` does not promise
more.)

Closing
-------
``close()`` sends close_notify (if the connection is still healthy), reads
and drops what the kernel already holds (so the close is a FIN, not a
reset), and closes the socket.  ``shutdown(SHUT_WR)`` sends close_notify and
a FIN and keeps reading (a TLS 1.3 half-close).  When TLS fails, the alert
is sent, the write side shut down and the input drained for a moment
before the error is raised, so the peer reads the alert, not a reset.
"""

from __future__ import annotations

import errno
import io
import select
import socket as _socket
import ssl
import time
from typing import Any, BinaryIO

from ._adapters import (
    ALERT_DRAIN_LIMIT,
    ALERT_DRAIN_TIMEOUT,
    ALERT_FLUSH_TIMEOUT,
    RECV_SIZE,
    Buffer,
    TLSDetails,
    ssl_compatible,
)
from .config import TLSConfig
from .errors import (
    BufferFullError,
    LocalProtocolError,
    RaggedEOFError,
    SecurePairError,
)
from .pair import PairState, SecurePair

__all__ = ["TLSSocket", "SocketContext", "wrap_socket"]

#: Cleartext encrypted per step of ``send``/``sendall``: 16 full records.
#: Encrypting and sending in steps keeps the data in cache between the two,
#: and bounds how much ciphertext can be waiting when the kernel stops
#: taking it.
SEND_CHUNK = 256 * 1024

_DONE_READING = frozenset({PairState.PEER_CLOSED, PairState.CLOSED, PairState.UNWRAPPED})
_CAN_CLOSE = frozenset({PairState.OPEN, PairState.PEER_CLOSED})
#: States in which the peer may still send data.
_RECEIVING = frozenset({PairState.OPEN, PairState.CLOSING})
_OPEN = PairState.OPEN
_CLOSING = PairState.CLOSING


def _receiving(state: PairState) -> bool:
    """The peer may still send data (identity tests: hashing an enum member
    for a set lookup costs a Python call)."""
    return state is _OPEN or state is _CLOSING


# ----------------------------------------------------------------------
# Waiting for a file descriptor, and the bounded I/O of the failure path


def _wait_fd(sock: _socket.socket, write: bool, timeout: float | None) -> bool:
    """Wait until ``sock`` is readable (or writable); False on timeout."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        return bool(poller.poll(ms))
    ready = (
        select.select([], [sock], [], timeout) if write else select.select([sock], [], [], timeout)
    )
    return any(ready)


def _send_bounded(sock: _socket.socket, data: bytes, timeout: float) -> bool:
    """Send ``data`` waiting at most ``timeout`` seconds; True if all went."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    saved = sock.gettimeout()
    sock.setblocking(False)
    try:
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, InterruptedError):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not _wait_fd(sock, True, remaining):
                    return False
        return True
    finally:
        sock.settimeout(saved)


def _drain(sock: _socket.socket, timeout: float, limit: int) -> bool:
    """Read and discard input until EOF, ``timeout`` seconds or ``limit``
    bytes, whichever comes first; True if EOF was seen."""
    deadline = time.monotonic() + timeout
    scratch = bytearray(65536)
    saved = sock.gettimeout()
    sock.setblocking(False)
    try:
        while limit > 0:
            try:
                count = sock.recv_into(scratch)
            except (BlockingIOError, InterruptedError):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not _wait_fd(sock, False, remaining):
                    return False
                continue
            if not count:
                return True
            limit -= count
        return False
    finally:
        sock.settimeout(saved)


def _want_read() -> ssl.SSLWantReadError:
    return ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)")


def _want_write() -> ssl.SSLWantWriteError:
    return ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)")


# ----------------------------------------------------------------------
# The socket


class TLSSocket(TLSDetails):
    """A TLS connection over a connected stream socket, used like
    ``ssl.SSLSocket``.

    Made by :func:`wrap_socket` or :meth:`SocketContext.wrap_socket`.  The
    socket's timeout mode at that moment becomes this object's (see the
    module documentation); the plain socket must not be used directly until
    :meth:`unwrap` returns it.  ``pair=`` adopts a pair made elsewhere (a
    STARTTLS negotiator's ``start_tls()``, which already holds the peer's
    first TLS bytes) instead of making one from ``config``.

    TLS failures raise the engine's errors
    (:class:`~securepair.errors.NotTLSError`,
    :class:`~securepair.errors.CertificateVerificationError`,
    :class:`~securepair.errors.RaggedEOFError`...) as instances that are also
    ``ssl.SSLError`` (``SSLCertVerificationError``, ``SSLEOFError``), so code
    written for ``ssl.SSLSocket`` catches them.
    """

    def __init__(
        self,
        sock: _socket.socket,
        config: TLSConfig | ssl.SSLContext | Any,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: Any = None,
        initial_data: Buffer = b"",
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool | None = None,
        pair: SecurePair | None = None,
    ) -> None:
        if sock.type != _socket.SOCK_STREAM:
            raise ValueError("TLS runs over stream sockets only (SOCK_STREAM)")
        timeout = sock.gettimeout()
        if do_handshake_on_connect and timeout == 0.0:
            raise ValueError(
                "do_handshake_on_connect should not be specified for non-blocking sockets"
            )
        sock.getpeername()  # OSError(ENOTCONN) for a socket that is not connected
        #: The config the pair was made with (``context`` is the same object).
        self.config = config
        self.context = config
        #: True on the server side.
        self.server_side = server_side
        #: The host name the client verifies and sends as SNI.
        self.server_hostname = server_hostname
        if pair is None:
            pair = SecurePair(
                config, server_side=server_side, server_hostname=server_hostname, session=session
            )
        elif pair.server_side != server_side:
            raise ValueError("pair= was made for the other side (server_side differs)")
        self.pair = pair
        self._sock = sock
        self._timeout: float | None = timeout
        if timeout is not None:
            sock.setblocking(False)
        self._suppress_ragged_eofs = bool(suppress_ragged_eofs)
        self._cleartext = self.pair.cleartext
        self._encrypted = self.pair.encrypted
        # The hot calls, bound once.
        self._ct_write = self._cleartext.write
        self._ct_read = self._cleartext.read
        self._ct_readinto = self._cleartext.readinto
        self._enc_write = self._encrypted.write
        self._enc_read = self._encrypted.read
        #: True while a blocking send (or receive) can take the short path:
        #: handshake done, nothing failed, nothing half sent, TLS open in
        #: that direction.  Recomputed after every slow path.
        self._fast_send = False
        self._fast_recv = False
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        #: Ciphertext the kernel has not taken yet, in order.
        self._unsent: memoryview | None = None
        #: Cleartext count that a send() interrupted by want-write or a
        #: timeout accepted; returned when the same call is repeated.
        self._owed = 0
        #: Received ciphertext the pair could not take yet (its buffers were
        #: full); fed before anything is read from the socket again.
        self._backlog = b""
        self._eof = False
        self._ragged_suppressed = False
        self._read_shut = False
        self._error: BaseException | None = None
        self._write_broken: str | None = None
        self._unwrapping = False
        self._detached = False
        self._closed = False
        self._really_closed = False
        self._io_refs = 0
        try:
            if initial_data:
                self._feed(memoryview(initial_data).cast("B"))
            if do_handshake_on_connect:
                self.do_handshake()
            self._refresh_fast()
        except BaseException:
            # The socket stays the caller's, in the mode it was given in.
            self._detached = True
            sock.settimeout(timeout)
            raise

    # ------------------------------------------------------------------
    # The plain socket's attributes

    @property
    def family(self) -> int:
        """The socket's address family."""
        return self._sock.family

    @property
    def type(self) -> int:
        """The socket's type (``SOCK_STREAM``)."""
        return self._sock.type

    @property
    def proto(self) -> int:
        """The socket's protocol number."""
        return self._sock.proto

    def fileno(self) -> int:
        """The file descriptor, for ``selectors``; -1 once closed."""
        if self._really_closed:
            return -1
        return self._sock.fileno()

    def getpeername(self) -> Any:
        """The peer's address."""
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        """The local address."""
        return self._sock.getsockname()

    def setsockopt(self, *args: Any) -> None:
        """``socket.setsockopt`` on the plain socket."""
        self._sock.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        """``socket.getsockopt`` on the plain socket."""
        return self._sock.getsockopt(*args)

    def gettimeout(self) -> float | None:
        """The timeout: ``None`` blocks, ``0.0`` never blocks."""
        return self._timeout

    def settimeout(self, value: float | None) -> None:
        """Set the timeout for each later call, as ``socket.settimeout``."""
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value
        if not self._detached:
            self._sock.settimeout(None if value is None else 0.0)
        self._refresh_fast()

    def setblocking(self, flag: bool) -> None:
        """``settimeout(None)`` if ``flag`` else ``settimeout(0.0)``."""
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        """False in non-blocking mode (timeout ``0.0``)."""
        return self._timeout != 0.0

    def pending(self) -> int:
        """Decrypted bytes ready to be read without touching the socket.

        Check this before waiting with ``selectors``: a read from the socket
        often decrypts more than one ``recv`` asks for.
        """
        return self._cleartext.pending

    # ------------------------------------------------------------------
    # Plumbing

    def _refresh_fast(self) -> None:
        pair = self.pair
        usable = (
            self._timeout is None
            and pair.handshake_complete
            and not (self._really_closed or self._detached or self._unwrapping)
            and self._error is None
            and self._unsent is None
        )
        state = pair.state
        self._fast_send = usable and self._write_broken is None and state in _CAN_CLOSE
        self._fast_recv = (
            usable and not (self._read_shut or self._eof or self._backlog) and state in _RECEIVING
        )

    def _break_writes(self, reason: str) -> None:
        """How much went out is unknown: no more writes, no close_notify."""
        if self._write_broken is None:
            self._write_broken = reason
        self._fast_send = False

    def _send_out(self, data: bytes) -> None:
        """Blocking mode: send ``data`` whole."""
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._break_writes(f"sending failed: {exc}")
            raise

    def _fill_fast(self) -> bool:
        """Blocking mode, nothing decrypted waiting: read from the socket
        until cleartext is.  False means "take the slow path" (EOF, the
        peer closed, an odd state); no byte is lost either way."""
        if self._unsent is not None:
            self._fast_recv = False
            return False
        out = self._enc_read()
        if out:
            self._send_out(out)
        sock = self._sock
        rbuf = self._rbuf
        rview = self._rview
        enc_write = self._enc_write
        cleartext = self._cleartext
        while True:
            count = sock.recv_into(rbuf)
            if not count:
                # EOF stays readable; the slow path feeds it to the pair.
                self._fast_recv = False
                return False
            try:
                taken = enc_write(rview[:count])
            except SecurePairError as exc:
                raise self._failed(exc) from None
            if taken < count:
                self._backlog = bytes(rview[taken:count])
                self._fast_recv = False
            out = self._enc_read()
            if out:
                self._send_out(out)
            if cleartext.pending:
                return True
            if not self._fast_recv or not _receiving(self.pair.state):
                self._fast_recv = False
                return False

    def _deadline(self) -> float | None:
        timeout = self._timeout
        if not timeout:
            return None
        return time.monotonic() + timeout

    def _wait(self, write: bool, deadline: float | None) -> None:
        """The kernel said EAGAIN: raise want-read/want-write in
        non-blocking mode, else wait for the socket until the deadline."""
        if self._timeout == 0.0:
            raise _want_write() if write else _want_read()
        remaining = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait_fd(self._sock, write, remaining):
                what = "write" if write else "read"
                if not self.pair.handshake_complete:
                    what = "handshake"
                raise TimeoutError(f"The {what} operation timed out")
        else:
            _wait_fd(self._sock, write, None)

    def _flush(self, deadline: float | None) -> None:
        """Send every pending encrypted byte."""
        encrypted = self._encrypted
        view = self._unsent
        sock = self._sock
        blocking = self._timeout is None
        while True:
            if view is None:
                if not encrypted.pending:
                    return
                view = memoryview(encrypted.read())
            if blocking:
                try:
                    sock.sendall(view)
                except (BlockingIOError, InterruptedError):
                    # Somebody made the socket non-blocking behind our back;
                    # how much went is unknown.
                    self._break_writes("the plain socket stopped blocking in sendall()")
                    raise
                except OSError as exc:
                    self._break_writes(f"sending failed: {exc}")
                    raise
                view = self._unsent = None
                continue
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                self._unsent = view
                self._wait(True, deadline)
                continue
            except OSError as exc:
                self._break_writes(f"sending failed: {exc}")
                raise
            view = view[sent:] if sent < len(view) else None
            self._unsent = view

    def _feed(self, data: memoryview) -> None:
        """Feed received ciphertext to the pair, keeping what it cannot take."""
        try:
            taken = self._encrypted.write(data)
        except BufferFullError:
            self._backlog = bytes(data)
            raise
        except SecurePairError as exc:
            raise self._failed(exc) from None
        if taken < len(data):
            self._backlog = bytes(data[taken:])

    def _feed_eof(self) -> None:
        try:
            self._encrypted.write_eof()
        except RaggedEOFError as exc:
            if self._suppress_ragged_eofs and self.pair.handshake_complete:
                self._ragged_suppressed = True
                self._error = ssl_compatible(exc)
                return
            raise self._failed(exc) from None
        except SecurePairError as exc:
            raise self._failed(exc) from None

    def _fill(self, deadline: float | None) -> bool:
        """Feed the pair once, from the backlog or the socket; False at EOF."""
        backlog = self._backlog
        if backlog:
            self._backlog = b""
            self._feed(memoryview(backlog))
            return True
        if self._eof:
            return False
        sock = self._sock
        while True:
            try:
                count = sock.recv_into(self._rbuf)
                break
            except (BlockingIOError, InterruptedError):
                self._wait(False, deadline)
        if not count:
            self._eof = True
            self._feed_eof()
            return False
        self._feed(self._rview[:count])
        return True

    def _failed(self, exc: SecurePairError) -> BaseException:
        """TLS failed: send the alert, shut down our write side and drain
        the input briefly, so the peer reads the alert and not a reset.
        Returns the error to raise."""
        if isinstance(exc, LocalProtocolError):
            return exc
        error = ssl_compatible(exc)
        self._error = error
        self._fast_send = self._fast_recv = False
        sock = self._sock
        nonblocking = self._timeout == 0.0
        try:
            pending = bytes(self._unsent or b"") + self._encrypted.read()
            self._unsent = None
            if pending:
                _send_bounded(sock, pending, 0.0 if nonblocking else ALERT_FLUSH_TIMEOUT)
            sock.shutdown(_socket.SHUT_WR)
            if not self._eof:
                self._eof = _drain(
                    sock, 0.0 if nonblocking else ALERT_DRAIN_TIMEOUT, ALERT_DRAIN_LIMIT
                )
        except OSError:
            pass
        return error

    def _check_open(self) -> None:
        if self._really_closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self._detached:
            raise ValueError("the TLSSocket was unwrapped; use the socket unwrap() returned")

    def _check_readable(self) -> None:
        if self._really_closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self._error is not None and not self._ragged_suppressed:
            raise self._error

    def _check_writable(self) -> None:
        self._check_open()
        if self._write_broken is not None:
            raise BrokenPipeError(
                errno.EPIPE, f"cannot send on this TLSSocket: {self._write_broken}"
            )
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------------
    # The handshake

    def do_handshake(self, block: bool = False) -> None:
        """Complete the handshake (done by the constructor unless
        ``do_handshake_on_connect=False``).  Non-blocking: raises
        want-read/want-write until done; ``block=True`` blocks anyway."""
        self._check_open()
        if self._error is not None:
            raise self._error
        if block and self._timeout == 0.0:
            self.settimeout(None)
            try:
                self._do_handshake(None)
            finally:
                self.settimeout(0.0)
            return
        try:
            self._do_handshake(self._deadline())
        finally:
            self._refresh_fast()

    def _do_handshake(self, deadline: float | None) -> None:
        pair = self.pair
        while not pair.handshake_complete:
            if self._unsent is not None or self._encrypted.pending:
                self._flush(deadline)
            if not self._fill(deadline):  # pragma: no cover - the pair raises first
                raise ConnectionAbortedError("the connection ended during the TLS handshake")
        if self._unsent is not None or self._encrypted.pending:
            self._flush(deadline)

    # ------------------------------------------------------------------
    # Reading

    def _await_cleartext(self) -> bool:
        """Read from the socket until cleartext is waiting (True) or the
        peer has finished sending (False)."""
        try:
            return self._await_cleartext_slow()
        finally:
            self._refresh_fast()

    def _await_cleartext_slow(self) -> bool:
        self._check_readable()
        pair = self.pair
        deadline = self._deadline()
        if not pair.handshake_complete:
            self._do_handshake(deadline)
        cleartext = self._cleartext
        while not cleartext.pending:
            # Output made while reading (the end of a handshake, a key
            # update) goes out first, unless a send is half done: then that
            # send's retry carries it.
            if self._unsent is None and self._encrypted.pending:
                self._flush(deadline)
            if self._read_shut or self._ragged_suppressed or pair.state in _DONE_READING:
                return False
            if not self._fill(deadline) and not self._backlog and not cleartext.pending:
                return False
        return True

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """Up to ``buflen`` decrypted bytes; ``b""`` once the peer has
        closed (close_notify)."""
        if self._fast_recv and not flags:
            data = self._ct_read(buflen)
            if data or buflen == 0 or (self._fill_fast() and (data := self._ct_read(buflen))):
                return data
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv() on TLSSocket")
        cleartext = self._cleartext
        if cleartext.pending and not self._really_closed:
            return cleartext.read(buflen)
        if not self._await_cleartext():
            return b""
        return cleartext.read(buflen)

    def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Read decrypted bytes into ``buffer`` (at most ``nbytes`` if
        given); 0 once the peer has closed."""
        if self._fast_recv and not (flags or nbytes):
            count = self._ct_readinto(buffer)
            if count or (self._fill_fast() and (count := self._ct_readinto(buffer))):
                return count
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv_into() on TLSSocket")
        cleartext = self._cleartext
        if (not cleartext.pending or self._really_closed) and not self._await_cleartext():
            return 0
        if nbytes:
            return cleartext.readinto(memoryview(buffer).cast("B")[:nbytes])
        return cleartext.readinto(buffer)

    def read(self, len: int = 1024, buffer: Buffer | None = None) -> Any:
        """``SSLSocket.read``: ``recv(len)``, or ``recv_into(buffer, len)``."""
        if buffer is not None:
            return self.recv_into(buffer, len)
        return self.recv(len)

    # ------------------------------------------------------------------
    # Writing

    def send(self, data: Buffer, flags: int = 0) -> int:
        """Encrypt and send up to 256 KiB of ``data``; returns how much.

        When the kernel cannot take all of the result (non-blocking mode,
        or the timeout passed), raises want-write (or ``TimeoutError``) with
        the rest kept: repeat the same call, which then returns the count.
        """
        if self._fast_send and not flags:
            size = len(data) if type(data) is bytes else memoryview(data).nbytes
            if size <= SEND_CHUNK:
                try:
                    count = self._ct_write(data)
                except SecurePairError as exc:
                    raise self._failed(exc) from None
                self._send_out(self._enc_read())
                return count
        try:
            return self._send_slow(data, flags)
        finally:
            self._refresh_fast()

    def _send_slow(self, data: Buffer, flags: int) -> int:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to send() on TLSSocket")
        self._check_writable()
        pair = self.pair
        deadline = self._deadline()
        if not pair.handshake_complete:
            self._do_handshake(deadline)
        if self._unsent is not None or self._owed:
            self._flush(deadline)
            owed = self._owed
            if owed:
                self._owed = 0
                return owed
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if not view:
            return 0
        count = self._cleartext.write(view[:SEND_CHUNK] if len(view) > SEND_CHUNK else view)
        try:
            self._flush(deadline)
        except (ssl.SSLWantWriteError, TimeoutError):
            self._owed = count
            raise
        return count

    def write(self, data: Buffer) -> int:
        """``SSLSocket.write``: the same as :meth:`send`."""
        return self.send(data)

    def sendall(self, data: Buffer, flags: int = 0) -> None:
        """Encrypt and send all of ``data``.

        If interrupted (timeout, want-write in non-blocking mode, an error),
        how much went is unknown, as with ``socket.sendall``: the write side
        is then broken on purpose (see the module documentation).
        """
        if self._fast_send and not flags:
            size = len(data) if type(data) is bytes else memoryview(data).nbytes
            if size <= SEND_CHUNK:
                try:
                    count = self._ct_write(data)
                except SecurePairError as exc:
                    raise self._failed(exc) from None
                self._send_out(self._enc_read())
                if count == size:
                    return
                data = memoryview(data).cast("B")[count:]
        try:
            self._sendall_slow(data, flags)
        finally:
            self._refresh_fast()

    def _sendall_slow(self, data: Buffer, flags: int) -> None:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to sendall() on TLSSocket")
        self._check_writable()
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        deadline = self._deadline()
        if not self.pair.handshake_complete:
            self._do_handshake(deadline)
        if self._unsent is not None or self._owed:
            self._flush(deadline)
            self._owed = 0
        write = self._cleartext.write
        total = len(view)
        done = 0
        try:
            while done < total:
                end = done + SEND_CHUNK
                done += write(view[done:end] if end < total else view[done:])
                self._flush(deadline)
        except BaseException as exc:
            if self._error is None:
                self._break_writes(f"an earlier sendall() was interrupted ({exc!r})")
            raise

    def sendfile(self, file: BinaryIO, offset: int = 0, count: int | None = None) -> int:
        """Send a file's contents (read and encrypted here: the kernel's
        ``sendfile`` cannot encrypt); returns the bytes sent."""
        if offset:
            file.seek(offset)
        blocksize = 64 * 1024
        total = 0
        while count is None or total < count:
            size = blocksize if count is None else min(blocksize, count - total)
            chunk = file.read(size)
            if not chunk:
                break
            self.sendall(chunk)
            total += len(chunk)
        return total

    # ------------------------------------------------------------------
    # Files

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """A file object over the connection, as ``socket.makefile``.  The
        TLSSocket really closes only once it and every file are closed."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, io.text_encoding(encoding), errors, newline)  # type: ignore[type-var]
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    # ------------------------------------------------------------------
    # Closing

    def shutdown(self, how: int) -> None:
        """Shut down one or both directions.

        ``SHUT_WR`` (or ``SHUT_RDWR``) sends close_notify first, then the
        FIN: the peer reads a clean end of data while this side can go on
        reading (TLS 1.3 half-close; a TLS 1.2 peer may answer with its own
        close).  ``SHUT_RD`` makes later reads return ``b""``.
        """
        self._check_open()
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            pair = self.pair
            usable = self._error is None and self._write_broken is None
            if usable and pair.handshake_complete and pair.state in _CAN_CLOSE:
                pair.close()
            if usable and (self._unsent is not None or self._encrypted.pending):
                self._flush(self._deadline())
        if how in (_socket.SHUT_RD, _socket.SHUT_RDWR):
            self._read_shut = True
        self._refresh_fast()
        self._sock.shutdown(how)

    def unwrap(self) -> tuple[_socket.socket, bytes]:
        """End TLS and return ``(plain socket, trailing bytes)``.

        Sends close_notify and waits for the peer's; the trailing bytes are
        what followed the peer's close_notify (plaintext of the next phase).
        The socket gets back the timeout this object has.  Cleartext that
        arrived before the peer's close_notify and was not read yet can
        still be read from this object.  Non-blocking: raises want-read /
        want-write until done; call again.
        """
        self._check_open()
        if self._error is not None:
            raise self._error
        pair = self.pair
        deadline = self._deadline()
        if not self._unwrapping:
            pair.unwrap()
            self._unwrapping = True
            self._fast_send = self._fast_recv = False
        self._flush(deadline)
        while pair.state is not PairState.UNWRAPPED:
            if not self._fill(deadline):
                raise ssl_compatible(
                    RaggedEOFError(
                        "peer closed the connection without close_notify: nothing to unwrap to"
                    )
                )
        trailing = pair.trailing_data + self._backlog
        self._backlog = b""
        self._detached = True
        sock = self._sock
        sock.settimeout(self._timeout)
        return sock, trailing

    def close(self) -> None:
        """Send close_notify, drop unread input (so the close is a FIN,
        not a reset) and close the socket.  While files from
        :meth:`makefile` are open, that waits until the last one closes, as
        with a socket.  After :meth:`unwrap` the socket belongs to the
        caller and is left open."""
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        # Until now (files from makefile() still open) the connection worked
        # on, as a socket's does after close().
        if self._really_closed:
            return
        self._really_closed = True
        self._fast_send = self._fast_recv = False
        if self._detached:
            return
        sock = self._sock
        pair = self.pair
        try:
            if self._error is None and self._write_broken is None:
                if pair.handshake_complete and pair.state in _CAN_CLOSE:
                    pair.close()
                pending = bytes(self._unsent or b"") + self._encrypted.read()
                self._unsent = None
                if pending:
                    wait = self._timeout
                    wait = ALERT_FLUSH_TIMEOUT if wait is None else min(wait, ALERT_FLUSH_TIMEOUT)
                    _send_bounded(sock, pending, wait)
            if not self._eof:
                _drain(sock, 0.0, ALERT_DRAIN_LIMIT)
        except (OSError, SecurePairError):
            pass
        finally:
            sock.close()

    def detach(self) -> int:
        """Close this object without closing the file descriptor; return it."""
        self._closed = self._really_closed = True
        self._fast_send = self._fast_recv = False
        return self._sock.detach()

    def __enter__(self) -> TLSSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._really_closed else self.pair.state.value
        return f"<securepair.socket.TLSSocket fd={self.fileno()} {state}>"


def wrap_socket(
    sock: _socket.socket,
    config: TLSConfig | ssl.SSLContext | Any,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    session: Any = None,
    initial_data: Buffer = b"",
    do_handshake_on_connect: bool = True,
    suppress_ragged_eofs: bool | None = None,
) -> TLSSocket:
    """Upgrade a connected stream socket to TLS.

    ``config`` is a :class:`~securepair.TLSConfig`, an ``ssl.SSLContext``
    or an ``OpenSSL.SSL.Context``.  ``initial_data`` holds bytes already read
    from the socket that belong to TLS (the peer's ClientHello that arrived
    with the STARTTLS command).  The handshake runs at once unless
    ``do_handshake_on_connect=False`` (required for non-blocking sockets,
    as with the stdlib).  A ragged EOF is an error unless the config allows
    it or ``suppress_ragged_eofs=True``.
    """
    return TLSSocket(
        sock,
        config,
        server_side=server_side,
        server_hostname=server_hostname,
        session=session,
        initial_data=initial_data,
        do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs,
    )


class SocketContext:
    """An ``ssl.SSLContext`` stand-in whose ``wrap_socket`` makes a
    :class:`TLSSocket`.

    Pass it where stdlib code takes ``context=``:
    ``http.client.HTTPSConnection``, ``urllib.request.HTTPSHandler``,
    ``smtplib.SMTP.starttls`` and ``SMTP_SSL``, ``imaplib.IMAP4_SSL``,
    ``ftplib.FTP_TLS``.  Unlike ``SSLContext.wrap_socket``, a ragged EOF is
    an error unless the config allows it
    (``TLSConfig(allow_ragged_eof=True)``, as HTTPS clients need).
    """

    #: Present because ``http.client`` looks at it; always ``None``.
    post_handshake_auth = None

    def __init__(self, config: TLSConfig | ssl.SSLContext | Any) -> None:
        self.config = config

    @property
    def check_hostname(self) -> bool:
        """Whether clients check the server's host name (from the config)."""
        config = self.config
        if isinstance(config, TLSConfig):
            return config.check_hostname and not config.insecure_no_verify
        return bool(getattr(config, "check_hostname", True))

    @check_hostname.setter
    def check_hostname(self, value: bool) -> None:
        if bool(value) != self.check_hostname:
            raise ValueError(
                "SocketContext takes check_hostname from its config; make a "
                "TLSConfig with the setting you want"
            )

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        """``CERT_NONE`` if clients skip verification, else
        ``CERT_REQUIRED`` (from the config)."""
        config = self.config
        if isinstance(config, TLSConfig):
            return ssl.CERT_NONE if config.insecure_no_verify else ssl.CERT_REQUIRED
        if isinstance(config, ssl.SSLContext):
            return config.verify_mode
        return ssl.CERT_REQUIRED

    def wrap_socket(  # noqa: PLR0917 - SSLContext.wrap_socket's signature
        self,
        sock: _socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool | None = None,
        server_hostname: str | None = None,
        session: Any = None,
    ) -> TLSSocket:
        """``SSLContext.wrap_socket``'s signature; returns a :class:`TLSSocket`."""
        return TLSSocket(
            sock,
            self.config,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
        )
