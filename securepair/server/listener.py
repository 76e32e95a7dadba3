"""Accepting connections for ``securepair serve``: limits, stop, workers.

The listener accepts by hand (a reader callback on the listening socket)
rather than through ``loop.create_server``, for two reasons:

* **Refusal before any work.**  A client outside the allowlist is closed
  the moment it is accepted: no transport, no task, no byte read.
* **Back-pressure on accepting.**  At ``--max-connections`` the listener
  stops accepting; new clients wait in the kernel's backlog (and time out
  there, as clients of a busy server do) instead of being accepted and
  dropped.  Accepting resumes when a connection ends.

A stop (SIGTERM or SIGINT) closes the listening socket at once, then lets
the connections in flight finish for ``--stop-timeout`` seconds: replies
being sent are not cut.  Connections still open after that are ended with
close_notify, and the process exits.

With ``--workers N`` a supervisor process forks N workers.  Each binds its
own socket to the same address with ``SO_REUSEPORT``, so the kernel
spreads new connections over them; the supervisor holds the port (bound,
not listening, which takes no connections) while they start, forwards
SIGTERM/SIGINT to them, and starts a new worker when one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import replace

from .log import Log, format_peer
from .relay import SHUTDOWN_TIMEOUT, ConnectionContext, Prelude, serve_connection
from .settings import ServeSettings

__all__ = ["Listener", "run", "bind"]

#: Connections accepted per wake-up at most, so one busy listener cannot
#: starve the connections already being served.
ACCEPT_BATCH = 64

#: Seconds after ending the last connections before the process exits
#: anyway: long enough for their close_notify exchange (SHUTDOWN_TIMEOUT).
FINAL_GRACE = SHUTDOWN_TIMEOUT + 1.0


def _raise_fd_limit() -> None:
    """Each client costs two descriptors (client and service): take the
    hard limit, as most servers do."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def bind(address: tuple[str, int], *, reuse_port: bool, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``address`` (listening unless ``listen`` is
    False).  Raises ``OSError`` with the address in the message."""
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:  # socket.gaierror: an unknown host name
        raise OSError(
            exc.errno, f"cannot listen on {format_peer(address)}: {exc.strerror}"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {format_peer(address)}: {exc.strerror}"
        ) from None
    return sock


class Listener:
    """One process's accept loop and the connections it serves."""

    def __init__(self, settings: ServeSettings, log: Log, sock: socket.socket) -> None:
        self.settings = settings
        self.log = log
        self.sock = sock
        self.ctx = ConnectionContext(settings, log)
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting = False
        self.stopping = False
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._full_logged = False

    @property
    def address(self) -> tuple[str, int]:
        """The address actually listened on (the port chosen for port 0)."""
        host, port = self.sock.getsockname()[:2]
        return host, port

    def _resume_accepting(self) -> None:
        if not self.accepting and not self.stopping and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self.accepting = True

    def _pause_accepting(self) -> None:
        if self.accepting and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.accepting = False

    def _accept(self) -> None:
        settings = self.settings
        trusted = settings.trusted_proxies
        for _ in range(ACCEPT_BATCH):
            if len(self.tasks) >= settings.max_connections:
                self._pause_accepting()
                if not self._full_logged:
                    self._full_logged = True
                    self.log.event(
                        "full",
                        None,
                        connections=len(self.tasks),
                        reason="--max-connections reached; further clients wait",
                    )
                return
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: log, and let the loop breathe before
                # the next try rather than spinning on a ready socket.
                self.log.event("error", None, reason=f"accept failed: {exc}")
                self._pause_accepting()
                assert self._loop is not None
                self._loop.call_later(0.1, self._resume_accepting)
                return
            host = peer[0]
            proxied = trusted is not None and trusted.allows(host)
            if not proxied and not settings.allowlist.allows(host):
                self.log.event("refused", format_peer(peer), reason="not in --allow")
                conn.close()
                continue
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(self._serve(conn, peer, proxied))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    async def _serve(self, conn: socket.socket, peer: tuple[str, int], proxied: bool) -> None:
        assert self._loop is not None
        try:
            transport, prelude = await self._loop.connect_accepted_socket(Prelude, conn)
        except OSError as exc:
            self.log.event("closed", format_peer(peer), reason=f"at accept: {exc}")
            conn.close()
            return
        await serve_connection(self.ctx, transport, prelude, peer, proxied=proxied)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log.event("error", None, reason=f"connection handler failed: {exc!r}")
        if len(self.tasks) < self.settings.max_connections:
            self._full_logged = False
            self._resume_accepting()
        if self.stopping and not self.tasks and self._stopped is not None:
            self._stopped.set()

    def stop(self) -> None:
        """Stop accepting and let connections in flight finish."""
        if self.stopping:
            return
        self.stopping = True
        self._pause_accepting()
        self.sock.close()
        self.log.event("stopping", None, connections=len(self.tasks))
        # Wake serve() now: _finish() gives the connections in flight
        # --stop-timeout seconds.  (Waiting here for them to end would
        # never time out.)
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or a signal), then finish in-flight
        connections as described in the module docstring."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self.stop)
        self._resume_accepting()
        await self._stopped.wait()
        await self._finish()

    async def _finish(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.settings.stop_timeout)
        if self.tasks:
            self.log.event(
                "stopping", None, connections=len(self.tasks), reason="--stop-timeout over"
            )
            for relay in list(self.ctx.relays):
                relay.stop()
            await asyncio.wait(set(self.tasks), timeout=FINAL_GRACE)
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=FINAL_GRACE)
        self.log.event("stopped", None)


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def _describe(settings: ServeSettings) -> dict[str, object]:
    if settings.echo:
        service = "echo"
    elif settings.forward is not None:
        service = format_peer(settings.forward)
    else:
        service = None
    return {
        "service": service,
        "routes": ",".join(f"{r.pattern}={format_peer(r.target)}" for r in settings.routes) or None,
        "starttls": settings.starttls,
        "allow": settings.allowlist.describe(),
        "trusted_proxies": settings.trusted_proxies.describe()
        if settings.trusted_proxies
        else None,
    }


def _run_worker(
    settings: ServeSettings, log: Log, sock: socket.socket, *, announce: bool, ready_fd: int = -1
) -> int:
    loop, loop_name = _new_loop()
    asyncio.set_event_loop(loop)
    listener = Listener(settings, log, sock)
    if announce:
        log.event(
            "listening",
            format_peer(listener.address),
            workers=settings.workers,
            loop=loop_name,
            **_describe(settings),
        )
    if ready_fd >= 0:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    try:
        loop.run_until_complete(listener.serve())
    finally:
        loop.close()
    return 0


def run(settings: ServeSettings, log: Log) -> int:
    """Serve with ``settings`` until stopped; returns the exit status."""
    _raise_fd_limit()
    if settings.request_cert_unenforced():
        log.event(
            "warning",
            None,
            reason="--request-cert without --reject-unauthorized: client certificates "
            "are checked and logged, not required",
        )
    if settings.workers == 1:
        sock = bind(settings.listen, reuse_port=False)
        return _run_worker(settings, log, sock, announce=True)
    return _supervise(settings, log)


def _stop_with_parent() -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies,
    even by SIGKILL, so that no orphaned worker keeps the port (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(settings: ServeSettings, log: Log) -> int:
    # Hold the port (bound, not listening) so that port 0 is resolved once
    # and no other program takes it while the workers start.
    holder = bind(settings.listen, reuse_port=True, listen=False)
    host, port = holder.getsockname()[:2]
    settings = replace(settings, listen=(host, port))
    workers: dict[int, int] = {}
    stopping = False

    def start_worker(index: int) -> int:
        read_end, write_end = os.pipe()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            holder.close()  # the supervisor's; a worker binds its own
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                _stop_with_parent()
                worker_log = Log(settings.log_format, quiet=settings.quiet)
                sock = bind(settings.listen, reuse_port=True)
                code = _run_worker(settings, worker_log, sock, announce=False, ready_fd=write_end)
            except BaseException as exc:  # report, then leave
                Log(settings.log_format).event("error", None, reason=f"worker failed: {exc}")
            finally:
                os._exit(code)
        os.close(write_end)
        # Known to forward() before it is ready: a SIGTERM that comes while
        # it starts must reach it too, or the wait below never ends.
        workers[pid] = index
        ok = os.read(read_end, 1) == b"r"
        os.close(read_end)
        if ok:
            log.event("worker-started", None, worker=index, worker_pid=pid)
        if stopping:  # it may have been too young to hear the signal
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return pid

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(settings.workers):
        if not stopping:
            workers[start_worker(index)] = index
    holder.close()
    if not stopping:
        log.event(
            "listening",
            format_peer((host, port)),
            workers=settings.workers,
            **_describe(settings),
        )
    restarts: list[float] = []
    status = 0
    while workers:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in workers:
            continue
        index = workers.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            continue
        log.event("worker-exited", None, worker=index, worker_pid=pid, status=code)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 5 * settings.workers:
            log.event("error", None, reason="workers keep dying; giving up")
            forward(signal.SIGTERM, None)
            status = 1
            continue
        workers[start_worker(index)] = index
    log.event("stopped", None)
    return status
