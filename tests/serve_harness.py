"""Running ``securepair serve`` as a user does, for the tests: a subprocess
on 127.0.0.1 with JSON log lines, plus the plaintext services behind it
and TLS clients in front of it.

Every process and thread here stops by itself: servers have timeouts, and
:class:`ServeProcess` is a context manager that kills what is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securepair import certgen

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 15.0


@dataclass
class ServeCerts:
    """A CA and a server certificate for localhost/127.0.0.1, as files."""

    folder: Path
    ca: certgen.CertificateAuthority

    @property
    def cert(self) -> Path:
        return self.folder / "server.cert"

    @property
    def key(self) -> Path:
        return self.folder / "server.pem"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.cert"

    def issue(self, name: str, hosts: list[str]) -> tuple[Path, Path]:
        """Another server certificate (for SNI), written as NAME.cert/NAME.pem."""
        leaf = self.ca.issue(hosts)
        cert, key = self.folder / f"{name}.cert", self.folder / f"{name}.pem"
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        key.chmod(0o600)
        return cert, key

    def client_context(self, **kwargs: Any) -> ssl.SSLContext:
        """A stdlib client context trusting this CA."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        for name, value in kwargs.items():
            setattr(ctx, name, value)
        return ctx


def make_certs(folder: Path) -> ServeCerts:
    """``server.cert``/``server.pem`` signed by a fresh CA (``ca.cert``)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = certgen.CertificateAuthority("serve test CA")
    certs = ServeCerts(folder, ca)
    (folder / "ca.cert").write_bytes(ca.cert_pem)
    certs.issue("server", ["localhost", "127.0.0.1", "::1"])
    return certs


def cli_env() -> dict[str, str]:
    """The environment for a ``python -m securepair`` child."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class ServeProcess:
    """``securepair serve --listen 127.0.0.1:0 --log-format json ARGS`` in a
    subprocess; :attr:`port` once it is listening, :meth:`events` for its
    log."""

    def __init__(self, *args: str, cwd: Path, listen: str = "127.0.0.1:0") -> None:
        self.log_path = cwd / f"serve-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.args = [
            sys.executable, "-m", "securepair", "serve",
            "--listen", listen, "--log-format", "json", *args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        listening = self.wait_for(lambda e: e.get("event") == "listening")
        host, _, port = listening["peer"].rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.listening = listening

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def text(self) -> str:
        """The whole log so far."""
        return self.log_path.read_text("utf-8", "replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events so far (lines that are not JSON are skipped)."""
        found = []
        for line in self.text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The first log event matching ``predicate``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no such log event within {timeout} s:\n{self.text()}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send ``signum`` and wait for the exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"serve did not stop within {timeout} s:\n{self.text()}"
                ) from None
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def run_serve(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``securepair serve ARGS`` to completion (for option errors)."""
    return subprocess.run(
        [sys.executable, "-m", "securepair", "serve", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class EchoService:
    """A plaintext TCP service on 127.0.0.1 in a thread: answers every
    chunk with ``prefix + chunk``; closes when the client half-closes."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(self.prefix + data)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(1)

    def __enter__(self) -> EchoService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def echo_service(prefix: bytes = b"") -> Iterator[EchoService]:
    with EchoService(prefix) as service:
        yield service


def tls_connect(
    port: int,
    ctx: ssl.SSLContext,
    *,
    server_hostname: str = "localhost",
    source: str | None = None,
    host: str = "127.0.0.1",
    prefix: bytes = b"",
    timeout: float = TIMEOUT,
) -> ssl.SSLSocket:
    """A stdlib TLS client connection to ``serve``; ``source`` picks the
    loopback address it comes from (127.0.0.2 is outside every default
    allowlist); ``prefix`` is sent before the ClientHello (a PROXY header)."""
    sock = socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        if prefix:
            sock.sendall(prefix)
        return ctx.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


def exchange(tls: ssl.SSLSocket, data: bytes, expect: int | None = None) -> bytes:
    """Send ``data`` and read until ``expect`` bytes (default: as many as
    sent) have come back or the peer closes."""
    tls.sendall(data)
    want = len(data) if expect is None else expect
    got = b""
    while len(got) < want:
        chunk = tls.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def interact(
    args: list[str],
    line: bytes,
    done: Callable[[bytes], bool] | None = None,
    *,
    cwd: Path | None = None,
) -> bytes:
    """Run an interactive client: send ``line`` on its stdin, collect its
    stdout until the line comes back (or ``done(output)``, or the time is
    up), then end it."""
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd
    )
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    try:
        if line:
            proc.stdin.write(line)
            proc.stdin.flush()
        deadline = time.monotonic() + TIMEOUT
        fd = proc.stdout.fileno()
        expect = line.strip()[-12:]
        finished = done or (lambda out: expect in out)
        while not finished(out) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        # Interactive clients ignore the end of their input: stop them.
        proc.terminate()
        proc.wait(TIMEOUT)
        proc.stdin.close()
        proc.stdout.close()
    return out


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Can this process bind ``port`` on 127.0.0.1 (and listen on it)?
    False when another process holds it."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` still running?  A zombie (exited, not yet reaped)
    is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


#: Serves one connection of an :class:`AsyncService`.
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every chunk with itself until the client half-closes."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


class AsyncService:
    """A plaintext TCP service on 127.0.0.1 run by an asyncio loop in its own
    thread, for many connections at once (:class:`EchoService` takes a
    thread per connection).  ``handler`` serves one connection (default:
    :func:`echo_streams`); each connection ends after ``timeout`` seconds
    at most.  :meth:`call` runs a function in the service's loop."""

    def __init__(
        self, handler: StreamHandler = echo_streams, *, timeout: float = 4 * TIMEOUT
    ) -> None:
        self.handler = handler
        self.timeout = timeout
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(TIMEOUT) or not self.port:
            raise AssertionError("the service did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self.handler(reader, writer)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    def call(self, function: Callable[[], object]) -> None:
        """Run ``function`` in the service's loop (soon, from any thread)."""
        self.loop.call_soon_threadsafe(function)

    def close(self) -> None:
        if not self.loop.is_closed():
            # RuntimeError: closed in between, so the thread has ended.
            with suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)

    def __enter__(self) -> AsyncService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
