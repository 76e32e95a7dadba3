"""``securepair serve`` against stunnel4, both in front of the same backend.

Both fronts run at once, each as its own process with its defaults and one
worker (``serve``: ``--listen``, ``--forward``, ``--cert``, ``--key``; stunnel:
the config of PEERS.md, whose threads all live in its one process), both
logging every connection to a file as they do by default.  (PEERS.md's
``output = /dev/stderr`` is left out: with ``foreground = yes`` stunnel
already logs to stderr, and would write every line twice.)  Both forward
to the same plaintext backend, and the same clients drive both, alternating
round by round (``alternate()``).  The certificate is ECDSA P-256 for both
(``--key-type rsa`` for RSA-2048); the clients offer TLS 1.3's defaults and
the run notes the suite each front negotiated.

Workloads:

(a) upload: one TLS connection sends a 9-byte header and 64 MiB in 1 MiB
    writes; the backend discards them and answers with the byte count.
    The front decrypts.  Each round is a new connection; its handshake is
    about 1 % of the round, the same for both fronts.
(b) download: the backend streams 64 MiB to the client, which reads it into
    one reusable buffer.  The front encrypts.
(c) new connections: ``openssl s_time -new -www /``, a C client, for a few
    seconds: a full handshake (no resumption), one small HTTP request and
    its response, close.

The fronts are other processes, so the rates are wall-clock rates: the
median of alternating rounds (15 for bulk, 7 for connections), after a
warm-up round of each.  A wall-clock rate also counts the client and the
backend, which are the same for both fronts and so pull the ratio towards
1, and on a shared machine it moves with the other load: stunnel against
itself (``--ours stunnel``) gave bulk ratios from 0.81 to 1.18 on two cores
with a load average near 4.  The rows "per front CPU s" move much less:
the work divided by the CPU time the front process itself used
(``/proc/PID/stat``, all its threads and its children, in clock ticks:
about 2 % resolution in a full run), so they say what each front costs;
stunnel against itself gave 1.00 for bulk there and 0.91 to 1.05 for
connections.  They are reports, not targets.

The backend is Python (``recv_into`` a 1 MiB buffer, one thread per
connection) in its own process.  Each round also measures it directly,
without TLS, with the same clients ("backend alone" rows, whose ratio is
its headroom over stunnel): it must be far faster than either front, or
the comparison says nothing.  For connections that client is a Python
loop instead of ``s_time``, so it shows the backend's capacity, not a
like-for-like rate.

    python benchmarks/bench_serve.py [--quick] [--ours serve|stunnel] [--key-type ecdsa|rsa]

``--ours stunnel`` runs stunnel against stunnel: the ratios then show the
noise of the method itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import Result, alternate, note, plan, print_table, skip
from securepair import certgen

MiB = 1 << 20
#: Each request: a mode byte (U: upload, D: download) and a byte count.
#: A request that starts with ``GET `` is HTTP (from ``openssl s_time``).
HEADER = struct.Struct("!cQ")
HTTP_RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
#: Size of every read and write buffer of the backend and the bulk client:
#: large enough that per-call overhead vanishes next to the copy.
BUFFER = MiB
TARGET = 0.8
STUNNEL = "/usr/bin/stunnel4"

STUNNEL_CONF = """\
foreground = yes
pid =
syslog = no
debug = notice
[front]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{backend}
cert = {cert}
key = {key}
"""


# ----------------------------------------------------------------------
# The backend: plaintext, in its own process


def _recv_exactly(sock: socket.socket, view: memoryview, n: int) -> bool:
    got = 0
    while got < n:
        count = sock.recv_into(view[got:n])
        if not count:
            return False
        got += count
    return True


def _backend_connection(sock: socket.socket) -> None:
    view = memoryview(bytearray(BUFFER))
    zeros = memoryview(bytes(BUFFER))
    try:
        while _recv_exactly(sock, view, HEADER.size):
            if view[:4].tobytes() == b"GET ":
                # s_time's request: read to the blank line, answer, close.
                request = bytes(view[: HEADER.size])
                while b"\r\n\r\n" not in request:
                    count = sock.recv_into(view)
                    if not count:
                        return
                    request += view[:count]
                sock.sendall(HTTP_RESPONSE)
                return
            mode, count = HEADER.unpack(view[: HEADER.size])
            if mode == b"U":
                left = count
                while left:
                    got = sock.recv_into(view[: min(left, BUFFER)])
                    if not got:
                        return
                    left -= got
                sock.sendall(struct.pack("!Q", count))
            elif mode == b"D":
                left = count
                while left:
                    n = min(left, BUFFER)
                    sock.sendall(zeros[:n])
                    left -= n
            else:
                return
    except OSError:
        pass
    finally:
        sock.close()


def run_backend() -> None:
    """The backend process: prints its port, then serves until killed."""
    with socket.create_server(("127.0.0.1", 0), backlog=512) as listener:
        print(listener.getsockname()[1], flush=True)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_backend_connection, args=(conn,), daemon=True).start()


# ----------------------------------------------------------------------
# The fronts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once ``port`` accepts TCP: both fronts dial the backend only
    after a handshake, so a bare connect is a safe probe."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{process.args!r} exited: {' | '.join(tail)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{process.args!r} did not listen on port {port} within 30 s")


class Front:
    """One TLS front process, its port, and the CPU time it has used."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        self.output = log.open("ab")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        self.pids = [self.process.pid]
        wait_listening(port, self.process, log)

    def find_children(self) -> None:
        """Count the processes the front started too (workers, if any)."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
        family = [self.process.pid]
        for pid in family:
            family += [child for child, parent in parents.items() if parent == pid]
        self.pids = family

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) used so far."""
        ticks = 0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime and stime are fields 14 and 15 of proc(5); the text
                # after the command name starts at field 3.
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.output.close()


def start_stunnel(name: str, folder: Path, backend: int, cert: Path, key: Path) -> Front:
    port = free_port()
    conf = folder / f"{name}.conf"
    conf.write_text(STUNNEL_CONF.format(port=port, backend=backend, cert=cert, key=key))
    return Front(name, [STUNNEL, str(conf)], port, folder / f"{name}.log")


def start_serve(folder: Path, backend: int, cert: Path, key: Path) -> Front:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "securepair",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--forward",
        f"127.0.0.1:{backend}",
        "--cert",
        str(cert),
        "--key",
        str(key),
    ]
    return Front("serve", command, port, folder / "serve.log")


def serve_missing() -> str | None:
    """Why ``securepair serve`` cannot run here, or None."""
    done = subprocess.run(
        [sys.executable, "-m", "securepair", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"securepair serve is not available in this tree ({last})"


# ----------------------------------------------------------------------
# The clients


class Clients:
    """The bulk clients (stdlib ``ssl`` in this process) and the connection
    client (``openssl s_time``), the same for every front."""

    def __init__(self, cert: Path, total: int, seconds: int, openssl: str | None) -> None:
        self.ctx = ssl.create_default_context(cafile=str(cert))
        self.cert = cert
        self.total = total
        self.seconds = seconds
        self.openssl = openssl
        self.buffer = memoryview(bytearray(BUFFER))
        self.chunk = memoryview(bytes(BUFFER))
        self.ciphers: dict[int, str] = {}

    @contextlib.contextmanager
    def connect(self, port: int, tls: bool) -> Iterator[Any]:
        raw = socket.create_connection(("127.0.0.1", port))
        sock: Any = raw
        try:
            if tls:
                sock = self.ctx.wrap_socket(raw, server_hostname="localhost")
                name, version, _bits = sock.cipher()
                self.ciphers[port] = f"{version} {name}"
            yield sock
        finally:
            sock.close()

    def upload(self, port: int, tls: bool = True) -> float:
        with self.connect(port, tls) as sock:
            sock.sendall(HEADER.pack(b"U", self.total))
            for _ in range(self.total // BUFFER):
                sock.sendall(self.chunk)
            if not _recv_exactly(sock, self.buffer, 8):
                raise ConnectionError(f"port {port} closed before the byte count")
            if struct.unpack("!Q", self.buffer[:8])[0] != self.total:
                raise ConnectionError(f"port {port}: the backend counted the wrong total")
        return self.total

    def download(self, port: int, tls: bool = True) -> float:
        with self.connect(port, tls) as sock:
            sock.sendall(HEADER.pack(b"D", self.total))
            left, view = self.total, self.buffer
            while left:
                got = sock.recv_into(view[: min(left, BUFFER)])
                if not got:
                    raise ConnectionError(f"port {port} closed {left} bytes early")
                left -= got
        return self.total

    def connections(self, port: int) -> float:
        """New connections made by ``openssl s_time`` in ``self.seconds``."""
        assert self.openssl is not None
        command = [
            self.openssl,
            "s_time",
            "-connect",
            f"127.0.0.1:{port}",
            "-new",
            "-www",
            "/",
            "-time",
            str(self.seconds),
            "-verify",
            "1",
            "-CAfile",
            str(self.cert),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=self.seconds + 60, check=False
        )
        found = re.search(r"^(\d+) connections in [0-9.]+s;", done.stdout, re.MULTILINE)
        if done.returncode != 0 or found is None:
            tail = (done.stdout + done.stderr).strip().splitlines()[-2:]
            raise RuntimeError(f"openssl s_time on port {port} failed: {' | '.join(tail)}")
        return float(found.group(1))

    def plain_connections(self, port: int) -> float:
        """The same exchange without TLS, from a Python loop, for as long."""
        request = b"GET / HTTP/1.0\r\n\r\n"
        count = 0
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(request)
                while sock.recv_into(self.buffer):
                    pass
            count += 1
        return count


# ----------------------------------------------------------------------


def compare(
    fronts: dict[str, Front],
    run: Callable[[Front], float],
    backend: Callable[[], float],
    name: str,
    unit: str,
    scale: float,
    rounds: int,
    anchor: str,
) -> list[Result]:
    """One workload: the fronts and the backend alone in alternating rounds,
    each front's CPU time summed over the counted rounds."""
    cpu = dict.fromkeys(fronts, 0.0)
    work = dict.fromkeys(fronts, 0.0)
    warm: set[str] = set()

    def contender(key: str) -> Callable[[], float]:
        front = fronts[key]

        def measure() -> float:
            before = front.cpu()
            done = run(front)
            if key in warm:
                cpu[key] += front.cpu() - before
                work[key] += done
            else:  # the warm-up round, which alternate() does not count either
                warm.add(key)
            return done

        return measure

    rates = alternate(
        {"ours": contender("ours"), "theirs": contender("theirs"), "backend": backend},
        rounds,
        label=name,
        clock=time.perf_counter,
    )
    per_cpu = {key: work[key] / cpu[key] if cpu[key] else float("nan") for key in fronts}
    return [
        Result(
            f"serve {name}",
            unit,
            rates["ours"] / scale,
            rates["theirs"] / scale,
            anchor,
            TARGET,
        ),
        Result(
            f"serve {name}, per front CPU s",
            unit,
            per_cpu["ours"] / scale,
            per_cpu["theirs"] / scale,
            anchor,
        ),
        Result(
            f"serve {name}, backend alone",
            unit,
            rates["backend"] / scale,
            rates["theirs"] / scale,
            f"{anchor} (headroom)",
        ),
    ]


def main(argv: list[str] | None = None) -> list[Result]:
    """Start the backend and both fronts, compare, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 MiB, 1 s and 3 rounds")
    parser.add_argument(
        "--ours",
        choices=("serve", "stunnel"),
        default="serve",
        help="the front measured against stunnel (stunnel: the method's own noise)",
    )
    parser.add_argument("--key-type", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--backend", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        run_backend()
        return []
    total = (8 if args.quick else 64) * MiB
    seconds = 1 if args.quick else 3
    # A bulk round takes a fraction of a second, so it can afford more
    # rounds: on a shared machine the median needs them (see the docstring).
    bulk_rounds = 3 if args.quick else 15
    rounds = 3 if args.quick else 7

    if not os.access(STUNNEL, os.X_OK):
        skip("serve vs stunnel4", f"{STUNNEL} is not installed (apt-get install stunnel4)")
        return []
    if not Path("/proc/self/stat").exists():
        skip("serve vs stunnel4", "needs /proc to count each front's CPU time")
        return []
    if args.ours == "serve":
        missing = serve_missing()
        if missing is not None:
            skip("serve vs stunnel4", missing)
            return []
    openssl = shutil.which("openssl")
    plan(3 if openssl else 2)

    kind = "RSA-2048" if args.key_type == "rsa" else "ECDSA P-256"
    issued = certgen.self_signed(["localhost", "127.0.0.1"], key_type=args.key_type)
    folder = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    # stunnel and serve may drop privileges or check modes; PEERS.md: 0755.
    folder.chmod(0o755)
    cert, key = folder / "server.cert", folder / "server.pem"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)

    # A child running this file, not multiprocessing: it needs nothing
    # from how the parent was started (script, -m, the CLI, a REPL).
    backend = subprocess.Popen(
        [sys.executable, __file__, "--backend"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    fronts: dict[str, Front] = {}
    results: list[Result] = []
    try:
        assert backend.stdout is not None
        backend_port = int(backend.stdout.readline())
        if args.ours == "serve":
            fronts["ours"] = start_serve(folder, backend_port, cert, key)
            ours = "securepair serve"
        else:
            fronts["ours"] = start_stunnel("stunnel-b", folder, backend_port, cert, key)
            ours = "stunnel (self-check)"
        fronts["theirs"] = start_stunnel("stunnel", folder, backend_port, cert, key)
        for front in fronts.values():
            front.find_children()
        clients = Clients(cert, total, seconds, openssl)
        anchor = "stunnel4"
        mib = total // MiB
        results += compare(
            fronts,
            lambda f: clients.upload(f.port),
            lambda: clients.upload(backend_port, tls=False),
            f"upload {mib} MiB",
            "MB/s",
            1e6,
            bulk_rounds,
            anchor,
        )
        results += compare(
            fronts,
            lambda f: clients.download(f.port),
            lambda: clients.download(backend_port, tls=False),
            f"download {mib} MiB",
            "MB/s",
            1e6,
            bulk_rounds,
            anchor,
        )
        if openssl:
            results += compare(
                fronts,
                lambda f: clients.connections(f.port),
                lambda: clients.plain_connections(backend_port),
                "new connections",
                "/s",
                1.0,
                rounds,
                anchor,
            )
        else:
            skip("serve new connections", "openssl (for openssl s_time) is not installed")
        suites = {key: clients.ciphers.get(front.port, "?") for key, front in fronts.items()}
        note(
            f"{ours} vs stunnel4, {kind}, one worker: bulk clients negotiated"
            f" {suites['ours']} and {suites['theirs']}; s_time -new -www / {seconds} s per round;"
            f" {bulk_rounds} bulk and {rounds} connection rounds"
        )
    finally:
        for front in fronts.values():
            front.stop()
        backend.kill()
        backend.wait(10)
        if backend.stdout is not None:
            backend.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
    print_table(results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
