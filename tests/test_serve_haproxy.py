"""``securepair serve`` behind HAProxy, scaled out as users run it.

HAProxy 2.6 in TCP mode passes TLS through, round robin, to ``serve``
instances on 127.0.0.1, and puts a PROXY v2 header in front of each
connection (``send-proxy-v2``).  Every instance runs with
``--proxy-protocol --trusted-proxy 127.0.0.1 --allow 127.0.0.3``: HAProxy
(which dials from 127.0.0.1) must send the header, nobody else may, and the
allowlist judges the address in the header.  The loopback addresses stand
for the outside world: 127.0.0.3 is an allowed client, 127.0.0.2 is not.

The HAProxy configuration is the one of the peers notes (frontend
``fe_passthrough``, backend ``be_pp2``).  HAProxy is ready once its port is
in LISTEN state; a TCP-connect probe would itself be passed to a backend.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from securepair.server.proxy_protocol import build_v2

from ._tools import require_tool
from .serve_harness import (
    TIMEOUT,
    AsyncService,
    ServeCerts,
    ServeProcess,
    exchange,
    free_port,
    make_certs,
    tls_connect,
)

pytestmark = pytest.mark.peer("haproxy")

ALLOWED = "127.0.0.3"
OUTSIDER = "127.0.0.2"
HAPROXY_ADDRESS = "127.0.0.1"

CONFIG = """\
global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe_passthrough
    bind 127.0.0.1:{port}
    default_backend be_pp2
backend be_pp2
    balance roundrobin
{servers}
"""

#: "127.0.0.3:51234 via 127.0.0.1:40312": a client as the PROXY header
#: names it, and the proxy that sent the header.
VIA = re.compile(r"(?P<client>[\d.]+):(?P<port>\d+) via (?P<proxy>[\d.]+):\d+")


def _listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:``port``?  (state 0A in
    /proc/net/tcp)"""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            return True
    return False


class HAProxy:
    """``haproxy -f FILE -db`` balancing over ``backends`` (ports on
    127.0.0.1) with send-proxy-v2; its log is :meth:`text`."""

    def __init__(self, folder: Path, backends: list[int]) -> None:
        binary = require_tool("haproxy", package="haproxy")
        self.port = free_port()
        servers = "\n".join(
            f"    server b{i} 127.0.0.1:{port} send-proxy-v2"
            for i, port in enumerate(backends, start=1)
        )
        self.config = folder / f"haproxy-{self.port}.cfg"
        self.config.write_text(CONFIG.format(port=self.port, servers=servers))
        self.log_path = folder / f"haproxy-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, "-f", str(self.config), "-db"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + TIMEOUT
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"haproxy did not start:\n{self.text()}")
            time.sleep(0.02)

    def text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _serve(certs: ServeCerts, folder: Path, service: AsyncService, *args: str) -> ServeProcess:
    return ServeProcess(
        "--data-dir", str(certs.folder),
        "--forward", service.address,
        "--proxy-protocol",
        "--trusted-proxy", HAPROXY_ADDRESS,
        "--allow", ALLOWED,
        *args,
        cwd=folder,
    )  # fmt: skip


@dataclass
class Balanced:
    certs: ServeCerts
    serves: list[ServeProcess]
    haproxy: HAProxy

    def events(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        """``(instance, event)`` for every ``name`` event of both instances."""
        return [(i, e) for i, serve in enumerate(self.serves) for e in serve.events(name)]


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    """Two ``serve`` instances behind one HAProxy."""
    require_tool("haproxy", package="haproxy")
    folder = tmp_path_factory.mktemp("serve-haproxy")
    certs = make_certs(folder / "certs")
    with (
        AsyncService() as service,
        _serve(certs, folder, service) as first,
        _serve(certs, folder, service) as second,
    ):
        haproxy = HAProxy(folder, [first.port, second.port])
        try:
            yield Balanced(certs, [first, second], haproxy)
        finally:
            haproxy.close()
        assert first.stop() == 0
        assert second.stop() == 0


def _wait(predicate: Any, what: str) -> Any:
    """``predicate()``'s first true value, waiting for it."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {TIMEOUT} s")
        time.sleep(0.05)
    return found


def _client(event: dict[str, Any]) -> str | None:
    """The client address:port of a proxied connection's log event."""
    match = VIA.fullmatch(event.get("peer", ""))
    return f"{match['client']}:{match['port']}" if match else None


def _connected_event(serve: ServeProcess, client: str) -> dict[str, Any]:
    """The ``connected`` event of proxied client ``client``, waiting for it."""
    found: dict[str, Any] = _wait(
        lambda: next((e for e in serve.events("connected") if _client(e) == client), None),
        f"the connected event of {client}",
    )
    return found


def _served_client(port: int, ctx: ssl.SSLContext, index: int) -> int:
    """A client from 127.0.0.3 that gets its echo; its source port."""
    line = b"through haproxy %d\n" % index
    with tls_connect(port, ctx, source=ALLOWED) as tls:
        client_port = tls.getsockname()[1]
        assert exchange(tls, line) == line
        tls.unwrap()
    return int(client_port)


def _refused_client(
    port: int, ctx: ssl.SSLContext, source: str, prefix: bytes = b""
) -> tuple[int, BaseException]:
    """A client from ``source`` whose handshake the server ends; its
    source port and what its TLS stack reported."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0)
    ) as sock:
        client_port = sock.getsockname()[1]
        if prefix:
            sock.sendall(prefix)
        with pytest.raises(OSError) as failure:
            ctx.wrap_socket(sock, server_hostname="localhost").close()
    return int(client_port), failure.value


def test_clients_are_balanced_and_logged_with_their_address(balanced: Balanced) -> None:
    ctx = balanced.certs.client_context()
    clients = [_served_client(balanced.haproxy.port, ctx, i) for i in range(6)]
    ours = {f"{ALLOWED}:{port}" for port in clients}

    def ended() -> list[tuple[int, dict[str, Any]]]:
        found = [(i, e) for i, e in balanced.events("closed") if _client(e) in ours]
        return found if len(found) == len(clients) else []

    closed = _wait(ended, "a closed event for every client")
    connected = [(i, e) for i, e in balanced.events("connected") if _client(e) in ours]
    per_instance = [sum(i == n for i, _ in connected) for n in range(2)]
    print(f"\n6 clients through haproxy, per instance: {per_instance}; e.g. {connected[0][1]}")
    # Round robin: the instances take turns.
    assert per_instance == [3, 3]
    # Each logs the client that HAProxy's header named, via HAProxy.
    for _, event in connected + closed:
        match = VIA.fullmatch(event["peer"])
        assert match is not None, event
        assert (match["client"], match["proxy"]) == (ALLOWED, HAPROXY_ADDRESS)
    assert all(e["bytes_in"] == e["bytes_out"] > 0 for _, e in closed)
    assert not [e for _, e in balanced.events("refused") if _client(e) in ours]


def test_client_outside_the_allowlist_is_refused_through_haproxy(balanced: Balanced) -> None:
    ctx = balanced.certs.client_context()
    client_port, failure = _refused_client(balanced.haproxy.port, ctx, OUTSIDER)
    prefix = f"{OUTSIDER}:{client_port} via {HAPROXY_ADDRESS}:"
    refused = _wait(
        lambda: [e for _, e in balanced.events("refused") if e["peer"].startswith(prefix)],
        f"refusal of {prefix}",
    )
    print(f"\nrefused through haproxy: {refused}; the client saw {failure!r}")
    assert all(e["reason"] == "not in --allow" for e in refused)
    assert not [e for _, e in balanced.events("connected") if OUTSIDER in e["peer"]]


def test_forged_proxy_header_from_a_client_is_refused(balanced: Balanced) -> None:
    """A client that reaches an instance directly and sends a PROXY header
    claiming to be 127.0.0.1 is refused: only HAProxy's headers count."""
    ctx = balanced.certs.client_context()
    serve = balanced.serves[0]
    forged = build_v2((HAPROXY_ADDRESS, 40000), (HAPROXY_ADDRESS, serve.port))
    client_port, failure = _refused_client(serve.port, ctx, ALLOWED, prefix=forged)
    peer = f"{ALLOWED}:{client_port}"
    refused = serve.wait_for(lambda e: e.get("event") == "refused" and e["peer"] == peer)
    print(f"\nforged header: {refused}; the client saw {failure!r}")
    assert refused["reason"] == "sent a PROXY header but is not a --trusted-proxy"
    # The same client without the header is allowed: it is the header that
    # was refused, and the log shows the real address, not a forged one.
    direct_port = _served_client(serve.port, ctx, 99)
    direct = serve.wait_for(lambda e: e.get("event") == "connected" and "via" not in e["peer"])
    assert direct["peer"] == f"{ALLOWED}:{direct_port}"


def test_workers_behind_haproxy(tmp_path: Path) -> None:
    """``serve --workers 2`` as one HAProxy backend: both workers (sharing
    the port with SO_REUSEPORT) serve, each with the client's address."""
    require_tool("haproxy", package="haproxy")
    certs = make_certs(tmp_path / "certs")
    ctx = certs.client_context()
    with (
        AsyncService() as service,
        _serve(certs, tmp_path, service, "--workers", "2") as serve,
    ):
        workers = {e["worker_pid"] for e in serve.events("worker-started")}
        assert len(workers) == 2
        haproxy = HAProxy(tmp_path, [serve.port])
        try:
            # The kernel spreads connections over the workers by a hash of
            # their addresses: keep going until both have served (at most
            # 40 connections; the chance that 40 all land on one worker is
            # 2**-39).
            seen: set[int] = set()
            clients = []
            for i in range(40):
                clients.append(_served_client(haproxy.port, ctx, i))
                event = _connected_event(serve, f"{ALLOWED}:{clients[-1]}")
                seen.add(event["pid"])
                if seen == workers:
                    break
        finally:
            haproxy.close()
        print(f"\n--workers 2 behind haproxy: both workers served within {len(clients)} clients")
        assert seen == workers
        assert serve.stop() == 0
