"""``securepair serve`` end to end, as a user runs it: a subprocess on
127.0.0.1, real sockets, and real ``curl`` and ``openssl`` in front of it.

Every test asserts what the user sees: the exit status, the one-line error,
the log events and their fields, and the bytes that come through.  The
loopback addresses 127.0.0.2 and 127.0.0.3 stand for clients from outside
(only 127.0.0.1 and ::1 are allowed by default).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from securepair.server.proxy_protocol import build_v1, build_v2

from ._tools import require_tool
from .serve_harness import (
    TIMEOUT,
    ServeCerts,
    ServeProcess,
    cli_env,
    echo_service,
    exchange,
    free_port,
    make_certs,
    pid_alive,
    port_is_free,
    rss_kib,
    run_serve,
    tls_connect,
)

#: The handshake deadline of the servers whose tests do not time it: short,
#: so that a test that goes wrong fails fast, and long enough for a loaded
#: machine.
HANDSHAKE = ("--handshake-timeout", "3")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ServeCerts:
    """``ca.cert``, ``server.cert``/``server.pem`` (localhost, 127.0.0.1),
    ``api.cert``/``api.pem`` (api.test) and ``client.cert``/``client.pem``
    (a client certificate), made once for the module."""
    made = make_certs(tmp_path_factory.mktemp("serve"))
    made.issue("api", ["api.test"])
    client = made.ca.issue(["client"], client=True)
    (made.folder / "client.cert").write_bytes(client.cert_pem)
    (made.folder / "client.pem").write_bytes(client.key_pem)
    return made


def _raw_connect(port: int, source: str | None = None) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0) if source else None
    )


def _local(sock: socket.socket) -> str:
    """How the server's log names this client socket."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything until the peer closes (a reset counts as a close)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def _client_hello(ctx: ssl.SSLContext) -> bytes:
    """The ClientHello ``ctx`` sends to localhost, as bytes on the wire."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _with_client_cert(certs: ServeCerts) -> ssl.SSLContext:
    ctx = certs.client_context()
    ctx.load_cert_chain(certs.folder / "client.cert", certs.folder / "client.pem")
    return ctx


def _one(sp: ServeProcess, name: str, **fields: Any) -> dict[str, Any]:
    """The log event ``name`` whose fields include ``fields``, waiting for it."""
    return sp.wait_for(
        lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    )


# ----------------------------------------------------------------------
# Option errors: one line, exit status 2, nothing listening


def _encrypted_key(certs: ServeCerts, folder: Path) -> Path:
    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    path = folder / "encrypted.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"the right one"),
        )
    )
    return path


OPTION_ERRORS = [
    pytest.param(
        ["--cert", "missing.cert"], "--cert: file not found: missing.cert", id="missing-cert"
    ),
    pytest.param(
        ["--key", "api.pem"], "--key: does not match the certificate", id="key-of-another-cert"
    ),
    pytest.param(
        ["--key", "encrypted.pem"],
        "--passphrase-file: the key is encrypted: give its passphrase",
        id="encrypted-key-no-passphrase",
    ),
    pytest.param(
        ["--key", "encrypted.pem", "--passphrase-file", "wrong.txt"],
        "--passphrase-file: does not decrypt the key",
        id="encrypted-key-wrong-passphrase",
    ),
    pytest.param(
        ["--ciphers", "NOPE"], "--ciphers: OpenSSL accepts no cipher in 'NOPE'", id="ciphers-nope"
    ),
    pytest.param(
        ["--ciphers", "RC4-SHA"], "--ciphers: 'RC4-SHA' asks for RC4, refused", id="ciphers-rc4"
    ),
    pytest.param(
        ["--allow", "10.0.0.1/8"],
        "--allow '10.0.0.1/8': has host bits set; the network address is 10.0.0.0",
        id="allow-host-bits",
    ),
    pytest.param(
        ["--allow", "192.168.1*"],
        "--allow '192.168.1*': * must stand for a whole octet",
        id="allow",
    ),
    pytest.param(
        ["--listen", "localhost"], "--listen 'localhost': expected HOST:PORT", id="listen-no-port"
    ),
    pytest.param(
        ["--listen", "127.0.0.1:99999"],
        "--listen '127.0.0.1:99999': the port must be a number from 0 to 65535",
        id="listen-port-range",
    ),
    pytest.param(
        ["--listen", "no-such-host.invalid:0"],
        "cannot listen on no-such-host.invalid:0:",
        id="listen-unknown-host",
    ),
    pytest.param(
        ["--route", "api.test"], "--route 'api.test': expected HOST=ADDR:PORT", id="route-no-target"
    ),
    pytest.param(
        ["--route", "api.test=9000"], "--route 'api.test=9000': expected", id="route-bad-target"
    ),
    pytest.param(
        ["--config", "typo.toml"],
        "--config 'typo.toml': unknown key 'max_conections'; did you mean 'max-connections'?",
        id="config-unknown-key",
    ),
    pytest.param(
        ["--proxy-protocol"],
        "--proxy-protocol needs --trusted-proxy ADDR",
        id="proxy-protocol-without-trusted-proxy",
    ),
    pytest.param(
        ["--request-cert"], "--request-cert needs --ca FILE", id="request-cert-without-ca"
    ),
    pytest.param(
        ["--reject-unauthorized"],
        "--reject-unauthorized needs --request-cert",
        id="reject-unauthorized-without-request-cert",
    ),
]


@pytest.mark.parametrize(("args", "message"), OPTION_ERRORS)
def test_option_error_is_one_line_and_nothing_listens(
    certs: ServeCerts, tmp_path: Path, args: list[str], message: str
) -> None:
    for name in ("ca.cert", "server.cert", "server.pem", "api.cert", "api.pem"):
        (tmp_path / name).write_bytes((certs.folder / name).read_bytes())
    _encrypted_key(certs, tmp_path)
    (tmp_path / "wrong.txt").write_text("the wrong one\n")
    (tmp_path / "typo.toml").write_text('forward = "127.0.0.1:9"\nmax_conections = 3\n')
    port = free_port()
    listen = [] if "--listen" in args else ["--listen", f"127.0.0.1:{port}"]
    forward = [] if "--config" in args else ["--forward", "127.0.0.1:9"]
    done = run_serve(*listen, *forward, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"securepair serve: error: {message}"), done.stderr
    assert port_is_free(port)


def test_nothing_to_serve(tmp_path: Path) -> None:
    port = free_port()
    done = run_serve("--listen", f"127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "securepair serve: error: nothing to serve: give --forward HOST:PORT, --route or --echo\n"
    )
    assert port_is_free(port)


def test_unreadable_key(certs: ServeCerts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        # chmod 000 does not stop root (CI runs as root): make the read of
        # that one file fail as it does for other users, and check the
        # message in process.
        from securepair.server.settings import SettingsError, load

        key = tmp_path / "unreadable.pem"
        key.write_bytes(b"")
        real = Path.read_bytes

        def read_bytes(path: Path) -> bytes:
            if path == key:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        with pytest.raises(SettingsError) as caught:
            load({"forward": "127.0.0.1:9", "cert": str(certs.cert), "key": str(key)})
        assert str(caught.value) == f"--key: cannot read {key}: permission denied"
        return
    key = tmp_path / "server.pem"
    key.write_bytes(certs.key.read_bytes())
    key.chmod(0)
    port = free_port()
    done = run_serve(
        "--listen", f"127.0.0.1:{port}", "--forward", "127.0.0.1:9",
        "--cert", str(certs.cert), "--key", str(key), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("securepair serve: error: --key: cannot read"), done.stderr
    assert "permission denied" in done.stderr
    assert port_is_free(port)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_address_already_in_use(certs: ServeCerts, workers: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_serve(
            "--listen", f"127.0.0.1:{port}", "--forward", "127.0.0.1:9", "--workers", workers,
            cwd=certs.folder,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"securepair serve: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


# ----------------------------------------------------------------------
# Relaying


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _http_service(root: Path) -> Iterator[int]:
    """A plaintext HTTP server for the files in ``root``; yields its port."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_curl_through_serve_to_http_service(certs: ServeCerts, tmp_path: Path) -> None:
    curl = require_tool("curl")
    site = tmp_path / "site"
    site.mkdir()
    body = b"hello over TLS\n" * 1000
    (site / "hello.txt").write_bytes(body)
    with (
        _http_service(site) as http_port,
        ServeProcess("--forward", f"127.0.0.1:{http_port}", *HANDSHAKE, cwd=certs.folder) as sp,
    ):
        assert sp.listening["service"] == f"127.0.0.1:{http_port}"
        done = subprocess.run(
            [curl, "--silent", "--show-error", "--max-time", "10", "--cacert",
             str(certs.ca_file), f"https://localhost:{sp.port}/hello.txt"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == body
        connected = _one(sp, "connected")
        assert connected["service"] == f"127.0.0.1:{http_port}"
        assert connected["sni"] == "localhost"
        assert connected["version"] in ("TLSv1.2", "TLSv1.3")
        closed = _one(sp, "closed", peer=connected["peer"])
        request = f"GET /hello.txt HTTP/1.1\r\nHost: localhost:{sp.port}\r\n".encode()
        assert closed["bytes_in"] >= len(request)
        assert len(body) < closed["bytes_out"] < len(body) + 1000  # the body and headers
        assert sp.stop() == 0


@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_relay_counts_the_bytes(certs: ServeCerts, backend: str) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--backend", backend, *HANDSHAKE, cwd=certs.folder
        ) as sp,
    ):
        data = os.urandom(300_000)
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, data) == data
            peer = _local(tls)
        closed = _one(sp, "closed", peer=peer)
        assert closed["bytes_in"] == len(data)
        assert closed["bytes_out"] == len(data)
        assert closed["reason"] == "both sides ended"
        assert service.peers, "the service was never dialled"
        assert sp.stop() == 0


@pytest.mark.parametrize("quiet", [False, True])
def test_service_down_is_logged(certs: ServeCerts, quiet: bool) -> None:
    down = f"127.0.0.1:{free_port()}"
    args = ["--quiet"] if quiet else []
    with ServeProcess("--forward", down, *args, *HANDSHAKE, cwd=certs.folder) as sp:
        with tls_connect(sp.port, certs.client_context()) as tls:
            # The handshake is done before the service is dialled; then
            # the client is closed.
            assert exchange(tls, b"anyone there?") == b""
            peer = _local(tls)
        event = _one(sp, "service-unreachable", peer=peer)
        assert event["reason"] == f"cannot reach the service {down}: Connection refused"
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, b"again") == b""
        sp.wait_for(lambda e: len(sp.events("service-unreachable")) == 2)
        assert sp.stop() == 0
    names = {e["event"] for e in sp.events()}
    if quiet:
        assert names == {"listening", "service-unreachable", "stopping", "stopped"}
    else:
        assert {"connected", "closed"} <= names


def test_openssl_s_client_shows_the_certificate(certs: ServeCerts) -> None:
    openssl = require_tool("openssl")
    with (
        echo_service() as service,
        ServeProcess("--forward", service.address, *HANDSHAKE, cwd=certs.folder) as sp,
    ):
        done = subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{sp.port}",
             "-CAfile", str(certs.ca_file)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert re.search(r"subject=\s*CN\s*=\s*localhost", done.stdout), done.stdout
        assert re.search(r"issuer=\s*CN\s*=\s*serve test CA", done.stdout)
        assert "Verify return code: 0 (ok)" in done.stdout
        assert sp.stop() == 0


def test_plain_http_client_is_told_to_use_https(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess("--forward", service.address, *HANDSHAKE, cwd=certs.folder) as sp,
        _raw_connect(sp.port) as sock,
    ):
        sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = _read_to_end(sock)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert answer.endswith(b"\r\n\r\nThis port speaks TLS: use https:// instead of http://\n")
        event = _one(sp, "not-tls", peer=_local(sock))
        assert "looks like HTTP" in event["reason"]
        assert "GET /index.html" in event["reason"]
        assert not service.peers
        assert not sp.events("connected")


def _wait_for_line(proc: subprocess.Popen[bytes], path: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + TIMEOUT
    while not (found := re.search(pattern, path.read_text(), re.MULTILINE)):
        assert proc.poll() is None and time.monotonic() < deadline, path.read_text()
        time.sleep(0.02)
    return found


def test_text_log_lines(certs: ServeCerts) -> None:
    log_path = certs.folder / "text.log"
    with echo_service(b">") as service, open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "securepair", "serve", "--listen", "127.0.0.1:0",
             "--forward", service.address, *HANDSHAKE],
            cwd=certs.folder, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
            head = rf"^{stamp} serve\[{proc.pid}\]"
            found = _wait_for_line(proc, log_path, rf"{head} listening 127\.0\.0\.1:(\d+) ")
            port = int(found.group(1))
            with tls_connect(port, certs.client_context()) as tls:
                assert exchange(tls, b"ping", 5) == b">ping"
                peer = _local(tls)
            _wait_for_line(proc, log_path, rf"{head} closed ")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = log_path.read_text().splitlines()
    assert re.fullmatch(
        rf"{head} listening 127\.0\.0\.1:{port} workers=1 loop=\S+ "
        rf'service={service.address} allow="localhost only"',
        lines[0],
    )
    assert re.fullmatch(
        rf"{head} connected {peer} service={service.address} version=TLSv1\.[23] "
        r"cipher=\S+ sni=localhost",
        lines[1],
    )
    assert re.fullmatch(
        rf'{head} closed {peer} bytes-in=4 bytes-out=5 seconds=[\d.]+ reason="both sides ended"',
        lines[2],
    )
    assert re.fullmatch(rf"{head} stopping connections=0", lines[3])
    assert re.fullmatch(rf"{head} stopped", lines[4])
    assert len(lines) == 5


# ----------------------------------------------------------------------
# The allowlist


def _assert_refused_before_handshake(sp: ServeProcess, certs: ServeCerts, source: str) -> None:
    with _raw_connect(sp.port, source) as sock:
        peer = _local(sock)
        # Closed at once, without a byte: no ServerHello will come.
        assert _read_to_end(sock) == b""
    event = _one(sp, "refused", peer=peer)
    assert event["reason"] == "not in --allow"
    # EOF or reset, as the kernel has it.
    with pytest.raises(OSError):
        tls_connect(sp.port, certs.client_context(), source=source).close()


def test_outside_client_is_refused_before_the_handshake(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess("--forward", service.address, *HANDSHAKE, cwd=certs.folder) as sp,
    ):
        assert sp.listening["allow"] == "localhost only"
        _assert_refused_before_handshake(sp, certs, "127.0.0.2")
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, b"from localhost") == b"from localhost"
        assert len(service.peers) == 1
        sp.wait_for(lambda e: len(sp.events("refused")) == 2)


@pytest.mark.parametrize("entry", ["127.0.0.2", "127.0.0.*", "127.0.0.0/30", "*"])
def test_allow_lets_the_client_in(certs: ServeCerts, entry: str) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--allow", entry, *HANDSHAKE, cwd=certs.folder
        ) as sp,
    ):
        with tls_connect(sp.port, certs.client_context(), source="127.0.0.2") as tls:
            assert exchange(tls, b"from outside") == b"from outside"
            peer = _local(tls)
        assert _one(sp, "connected", peer=peer)["service"] == service.address
        if entry != "*":
            _assert_refused_before_handshake(sp, certs, "127.0.1.2")
        assert not any(e["peer"] == peer for e in sp.events("refused"))


def test_allow_in_a_config_file(certs: ServeCerts, tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    with echo_service() as service:
        config.write_text(
            f'forward = "{service.address}"\n'
            f'data-dir = "{certs.folder}"\n'
            'allow = ["127.0.0.2", "127.0.0.4/32"]\n'
            "handshake-timeout = 3\n"
        )
        with ServeProcess("--config", str(config), cwd=tmp_path) as sp:
            assert sp.listening["allow"] == "localhost, 127.0.0.2, 127.0.0.4/32"
            for source in ("127.0.0.2", "127.0.0.4"):
                with tls_connect(sp.port, certs.client_context(), source=source) as tls:
                    assert exchange(tls, source.encode()) == source.encode()
            _assert_refused_before_handshake(sp, certs, "127.0.0.3")
            clients = [e["peer"].rpartition(":")[0] for e in sp.events("connected")]
            assert clients == ["127.0.0.2", "127.0.0.4"]
            assert len(service.peers) == 2


# ----------------------------------------------------------------------
# SNI: certificates and routes


def _subject_cn(tls: ssl.SSLSocket) -> str:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    (cn,) = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn.value)


def test_sni_cert_is_served_to_clients_that_ask(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--sni-cert", "api.test=api.cert,api.pem",
            *HANDSHAKE, cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        for name in ("api.test", "localhost"):
            with tls_connect(sp.port, certs.client_context(), server_hostname=name) as tls:
                assert _subject_cn(tls) == name
                assert exchange(tls, name.encode()) == name.encode()
                assert _one(sp, "connected", peer=_local(tls))["sni"] == name


def test_routes_pick_the_service_by_name(certs: ServeCerts) -> None:
    no_hostname_check = {"check_hostname": False}
    with (
        echo_service(b"default:") as default,
        echo_service(b"api:") as api,
        echo_service(b"wild:") as wild,
        ServeProcess(
            "--forward", default.address,
            # The exact name wins over the wildcard, whatever the order.
            "--route", f"*.test={wild.address}", "--route", f"api.test={api.address}",
            "--sni-cert", "api.test=api.cert,api.pem", *HANDSHAKE, cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        cases = [
            ("api.test", b"api:", api, {}),
            ("www.test", b"wild:", wild, no_hostname_check),
            ("localhost", b"default:", default, {}),
        ]
        for name, prefix, service, options in cases:
            ctx = certs.client_context(**options)
            with tls_connect(sp.port, ctx, server_hostname=name) as tls:
                assert exchange(tls, b"hi", len(prefix) + 2) == prefix + b"hi"
                peer = _local(tls)
            event = _one(sp, "connected", peer=peer)
            assert event["sni"] == name
            assert event["service"] == service.address
            assert len(service.peers) == 1


def test_unknown_name_without_forward_gets_unrecognized_name(certs: ServeCerts) -> None:
    with (
        echo_service() as api,
        ServeProcess("--route", f"api.test={api.address}", *HANDSHAKE, cwd=certs.folder) as sp,
    ):
        assert sp.listening["routes"] == f"api.test={api.address}"
        assert "service" not in sp.listening
        with (
            _raw_connect(sp.port) as sock,
            pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME") as refused,
        ):
            peer = _local(sock)
            certs.client_context().wrap_socket(sock, server_hostname="localhost")
        assert "unrecognized name" in str(refused.value)
        event = _one(sp, "no-route", peer=peer)
        assert event["sni"] == "localhost"
        assert not api.peers
        # The name that has a route is served.
        ctx = certs.client_context(check_hostname=False)
        with tls_connect(sp.port, ctx, server_hostname="api.test") as tls:
            assert exchange(tls, b"api") == b"api"


# ----------------------------------------------------------------------
# PROXY protocol


def _proxy_server(certs: ServeCerts, service_address: str) -> ServeProcess:
    return ServeProcess(
        "--forward", service_address, "--proxy-protocol", "--trusted-proxy", "127.0.0.1",
        "--allow", "127.0.0.3", *HANDSHAKE, cwd=certs.folder,
    )  # fmt: skip


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_names_the_client(certs: ServeCerts, version: int) -> None:
    build = build_v1 if version == 1 else build_v2
    with echo_service() as service, _proxy_server(certs, service.address) as sp:
        assert sp.listening["trusted_proxies"] == "127.0.0.1"
        header = build(("127.0.0.3", 50003), ("127.0.0.1", sp.port))
        with tls_connect(sp.port, certs.client_context(), prefix=header) as tls:
            assert exchange(tls, b"proxied") == b"proxied"
            proxy = _local(tls)
        event = _one(sp, "connected")
        assert event["peer"] == f"127.0.0.3:50003 via {proxy}"
        assert _one(sp, "closed")["peer"] == event["peer"]
        # A claimed address outside the allowlist is refused.
        header = build(("127.0.0.2", 50002), ("127.0.0.1", sp.port))
        with pytest.raises(OSError):  # EOF or reset
            tls_connect(sp.port, certs.client_context(), prefix=header).close()
        refused = _one(sp, "refused")
        assert refused["peer"].startswith("127.0.0.2:50002 via 127.0.0.1:")
        assert refused["reason"] == "not in --allow"
        assert len(service.peers) == 1


def test_proxy_header_rules(certs: ServeCerts) -> None:
    with echo_service() as service, _proxy_server(certs, service.address) as sp:
        # A trusted proxy that sends no header.
        with _raw_connect(sp.port) as sock:
            proxy = _local(sock)
            sock.sendall(_client_hello(certs.client_context()))
            assert _read_to_end(sock) == b""
        event = _one(sp, "refused", peer=proxy)
        assert event["reason"].startswith("bad PROXY header from a trusted proxy: ")
        # An allowed client that is not a trusted proxy cannot claim an address.
        header = build_v1(("127.0.0.1", 1), ("127.0.0.1", sp.port))
        with _raw_connect(sp.port, "127.0.0.3") as sock:
            direct = _local(sock)
            sock.sendall(header)
            assert _read_to_end(sock) == b""
        event = _one(sp, "refused", peer=direct)
        assert event["reason"] == "sent a PROXY header but is not a --trusted-proxy"
        # Without a header it is served.
        with tls_connect(sp.port, certs.client_context(), source="127.0.0.3") as tls:
            assert exchange(tls, b"direct") == b"direct"
            direct = _local(tls)
        assert _one(sp, "connected", peer=direct)
        # LOCAL: the proxy's own health check, served as the proxy itself.
        with tls_connect(sp.port, certs.client_context(), prefix=build_v2()) as tls:
            assert exchange(tls, b"health") == b"health"
            proxy = _local(tls)
        assert _one(sp, "connected", peer=proxy)
        assert len(service.peers) == 2


def test_proxy_header_without_an_address_is_judged_on_the_proxy(certs: ServeCerts) -> None:
    """UNKNOWN, LOCAL and UNSPEC headers name no client: the specification
    says to use the connection's own addresses, so the proxy's address
    faces the allowlist (here it is not on it)."""
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--proxy-protocol", "--trusted-proxy", "127.0.0.3",
            "--allow", "127.0.0.4", *HANDSHAKE, cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        for header in (b"PROXY UNKNOWN\r\n", build_v2()):
            with pytest.raises(OSError):  # EOF or reset
                tls_connect(
                    sp.port, certs.client_context(), source="127.0.0.3", prefix=header
                ).close()
        refused = sp.events("refused")
        assert len(refused) == 2
        assert all(e["reason"] == "not in --allow" for e in refused)
        assert not service.peers


# ----------------------------------------------------------------------
# Timeouts and limits


def test_handshake_timeout(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--handshake-timeout", "1", cwd=certs.folder
        ) as sp,
        _raw_connect(sp.port) as silent,
        _raw_connect(sp.port) as halfway,
    ):
        started = time.monotonic()
        hello = _client_hello(certs.client_context())
        halfway.sendall(hello[: len(hello) // 2])
        # Meanwhile another client is served.
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, b"meanwhile") == b"meanwhile"
            served = _local(tls)
        for sock in (silent, halfway):
            assert _read_to_end(sock) == b""
            assert 0.8 < time.monotonic() - started < 5
        names = [(e["event"], e.get("peer")) for e in sp.events()]
        assert names.index(("connected", served)) < names.index(("timeout", _local(silent)))
        for sock in (silent, halfway):
            event = _one(sp, "timeout", peer=_local(sock))
            assert event["reason"] == "no finished handshake within --handshake-timeout"
        assert service.peers and len(service.peers) == 1


def test_idle_timeout_closes_a_quiet_connection(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--idle-timeout", "1", *HANDSHAKE, cwd=certs.folder
        ) as sp,
    ):
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, b"once") == b"once"
            quiet_since = time.monotonic()
            # close_notify: the stdlib client reads it as the end.
            assert tls.recv(100) == b""
            assert 0.8 < time.monotonic() - quiet_since < 5
            peer = _local(tls)
        closed = _one(sp, "closed", peer=peer)
        assert closed["reason"] == "idle for 1 s"
        assert (closed["bytes_in"], closed["bytes_out"]) == (4, 4)


def test_max_connections_makes_new_clients_wait(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--max-connections", "2", "--handshake-timeout", "10",
            cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        first = tls_connect(sp.port, certs.client_context())
        second = tls_connect(sp.port, certs.client_context())
        result: list[ssl.SSLSocket | BaseException] = []

        def third() -> None:
            try:
                result.append(tls_connect(sp.port, certs.client_context()))
            except BaseException as exc:  # handed to the test thread
                result.append(exc)

        thread = threading.Thread(target=third)
        try:
            for tls in (first, second):
                assert exchange(tls, b"open") == b"open"
            thread.start()
            full = _one(sp, "full")
            assert full["connections"] == 2
            thread.join(0.7)
            assert thread.is_alive(), f"the third handshake did not wait: {result}"
            first.close()
            thread.join(TIMEOUT)
            assert not thread.is_alive()
            (third_tls,) = result
            assert isinstance(third_tls, ssl.SSLSocket), third_tls
            with third_tls:
                assert exchange(third_tls, b"third") == b"third"
        finally:
            first.close()
            second.close()
            thread.join(TIMEOUT)
        assert len(sp.events("connected")) == 3


# ----------------------------------------------------------------------
# Workers


def _connect_many(sp: ServeProcess, certs: ServeCerts, count: int) -> list[str]:
    peers = []
    for n in range(count):
        with tls_connect(sp.port, certs.client_context()) as tls:
            data = f"client {n}".encode()
            assert exchange(tls, data) == data
            peers.append(_local(tls))
    return peers


def test_workers_share_the_port_and_stop_together(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--workers", "2", *HANDSHAKE, cwd=certs.folder
        ) as sp,
    ):
        assert sp.listening["workers"] == 2
        started = {e["worker_pid"] for e in sp.events("worker-started")}
        assert len(started) == 2 and sp.proc.pid not in started
        peers = _connect_many(sp, certs, 24)
        serving = {_one(sp, "connected", peer=peer)["pid"] for peer in peers}
        assert serving == started
        # A worker that dies is replaced.
        victim = min(started)
        os.kill(victim, signal.SIGKILL)
        exited = _one(sp, "worker-exited", worker_pid=victim)
        assert exited["status"] == -signal.SIGKILL
        replaced = sp.wait_for(
            lambda e: e.get("event") == "worker-started" and e["worker_pid"] not in started
        )
        assert replaced["worker"] == exited["worker"]
        names = [e["event"] for e in sp.events() if e["event"].startswith("worker-")]
        assert names == ["worker-started"] * 2 + ["worker-exited", "worker-started"]
        workers = (started - {victim}) | {replaced["worker_pid"]}
        peers = _connect_many(sp, certs, 24)
        assert {_one(sp, "connected", peer=peer)["pid"] for peer in peers} == workers
        assert sp.stop() == 0
    for pid in workers | started:
        assert not pid_alive(pid), f"worker {pid} is still running"
    assert port_is_free(sp.port)
    # Each worker finishes, then the supervisor.
    stopped = [e["pid"] for e in sp.events("stopped")]
    assert sorted(stopped[:-1]) == sorted(workers)
    assert stopped[-1] == sp.proc.pid
    assert sp.events()[-1]["event"] == "stopped"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_while_workers_start(certs: ServeCerts) -> None:
    """A stop asked for before every worker has started stops them all."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "securepair", "serve", "--listen", "127.0.0.1:0",
         "--echo", "--workers", "4", "--log-format", "json"],
        cwd=certs.folder, env=cli_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert '"event": "worker-started"' in first
        # At once: the other workers are still starting.
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:  # hung: end it and the workers it left
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, first + rest
    assert rest.splitlines()[-1].endswith('"event": "stopped"}')
    for pid in re.findall(r'"worker_pid": (\d+)', first + rest):
        assert not pid_alive(int(pid)), f"worker {pid} is still running"


# ----------------------------------------------------------------------
# Graceful stop


class _SlowService:
    """A plaintext service that answers a request with ``pieces`` pieces,
    ``delay`` seconds apart, then closes."""

    def __init__(self, pieces: list[bytes], delay: float) -> None:
        self.pieces, self.delay = pieces, delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve_one)
        self.thread.start()

    def _serve_one(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(1024)
            for piece in self.pieces:
                conn.sendall(piece)
                time.sleep(self.delay)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(TIMEOUT)


def test_sigterm_lets_the_reply_finish(certs: ServeCerts) -> None:
    pieces = [f"piece {n} of the reply\n".encode() * 100 for n in range(5)]
    service = _SlowService(pieces, 0.3)
    try:
        with ServeProcess("--forward", service.address, *HANDSHAKE, cwd=certs.folder) as sp:
            with tls_connect(sp.port, certs.client_context()) as tls:
                tls.sendall(b"GET /slow\r\n")
                got = tls.recv(65536)
                assert got.startswith(pieces[0][:20])
                sp.proc.send_signal(signal.SIGTERM)
                assert _one(sp, "stopping")["connections"] == 1
                with pytest.raises(ConnectionRefusedError):
                    _raw_connect(sp.port).close()
                got += _read_to_end(tls)
                peer = _local(tls)
            assert got == b"".join(pieces)
            assert sp.proc.wait(TIMEOUT) == 0
            closed = _one(sp, "closed", peer=peer)
            assert closed["bytes_out"] == len(got)
            assert closed["seconds"] >= 1.0
            names = [e["event"] for e in sp.events()]
            assert names == ["listening", "connected", "stopping", "closed", "stopped"]
    finally:
        service.close()


def test_stop_timeout_ends_what_is_left(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--stop-timeout", "1", "--handshake-timeout", "30",
            cwd=certs.folder,
        ) as sp,
        tls_connect(sp.port, certs.client_context()) as idle,
        _raw_connect(sp.port) as handshaking,
    ):  # fmt: skip
        assert exchange(idle, b"still here") == b"still here"
        asked = time.monotonic()
        sp.proc.send_signal(signal.SIGTERM)
        assert _one(sp, "stopping")["connections"] == 2
        # After --stop-timeout the relay is ended with close_notify...
        assert idle.recv(100) == b""
        assert 0.8 < time.monotonic() - asked < 5
        over = _one(sp, "stopping", reason="--stop-timeout over")
        assert over["connections"] == 2
        # ...and the process exits, the connections cut after a last grace.
        assert sp.proc.wait(TIMEOUT) == 0
        assert time.monotonic() - asked < 8
        assert _read_to_end(handshaking) == b""
        assert sp.events()[-1]["event"] == "stopped"


# ----------------------------------------------------------------------
# --config FILE


def test_config_file_and_flags_over_it(certs: ServeCerts, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("server.cert", "server.pem"):
        (conf / f"my-{name}").write_bytes((certs.folder / name).read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = conf / "serve.toml"
    with echo_service(b"A:") as a, echo_service(b"B:") as b:
        config.write_text(
            "# the same names as the flags\n"
            f'forward = "{a.address}"\n'
            "max-connections = 1\n"
            'cert = "my-server.cert"\n'
            'key = "my-server.pem"\n'
            "handshake_timeout = 3\n"
        )
        with ServeProcess("--config", str(config), cwd=elsewhere) as sp:
            assert sp.listening["service"] == a.address
            with tls_connect(sp.port, certs.client_context()) as first:
                assert exchange(first, b"1", 3) == b"A:1"
                # max-connections = 1: a second client waits.
                with pytest.raises(TimeoutError):
                    tls_connect(sp.port, certs.client_context(), timeout=0.5).close()
        with ServeProcess(
            "--config", str(config), "--forward", b.address, "--max-connections", "2",
            cwd=elsewhere,
        ) as sp:  # fmt: skip
            assert sp.listening["service"] == b.address
            with (
                tls_connect(sp.port, certs.client_context()) as first,
                tls_connect(sp.port, certs.client_context(), timeout=5) as second,
            ):
                assert exchange(first, b"1", 3) == b"B:1"
                assert exchange(second, b"2", 3) == b"B:2"
        assert len(a.peers) == 1 and len(b.peers) == 2


# ----------------------------------------------------------------------
# Client certificates


# api.test is served its own certificate (--sni-cert): client certificates
# are asked for and checked the same way.
@pytest.mark.parametrize("name", ["localhost", "api.test"])
def test_client_certificate_required(certs: ServeCerts, name: str) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--ca", "ca.cert", "--request-cert",
            "--reject-unauthorized", "--sni-cert", "api.test=api.cert,api.pem",
            *HANDSHAKE, cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        assert not sp.events("warning")
        with (
            _raw_connect(sp.port) as sock,
            certs.client_context().wrap_socket(sock, server_hostname=name) as tls,
            # TLS 1.3: the client hears of the refusal on its first read.
            pytest.raises(ssl.SSLError, match=r"CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE"),
        ):
            peer = _local(tls)
            exchange(tls, b"no certificate")
        event = _one(sp, "handshake-failed", peer=peer)
        assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in event["reason"]
        with tls_connect(sp.port, _with_client_cert(certs), server_hostname=name) as tls:
            assert _subject_cn(tls) == name
            assert exchange(tls, b"with one") == b"with one"
            peer = _local(tls)
        event = _one(sp, "connected", peer=peer)
        assert event["sni"] == name
        assert event["client_cert"] == "CN=client"
        assert event["authorized"] is True
        assert len(service.peers) == 1


def test_client_certificate_requested_not_required(certs: ServeCerts) -> None:
    with (
        echo_service() as service,
        ServeProcess(
            "--forward", service.address, "--ca", "ca.cert", "--request-cert",
            *HANDSHAKE, cwd=certs.folder,
        ) as sp,
    ):  # fmt: skip
        (warning,) = sp.events("warning")
        assert "--request-cert without --reject-unauthorized" in warning["reason"]
        names = [e["event"] for e in sp.events()]
        assert names.index("warning") < names.index("listening")
        with tls_connect(sp.port, certs.client_context()) as tls:
            assert exchange(tls, b"anonymous") == b"anonymous"
            peer = _local(tls)
        event = _one(sp, "connected", peer=peer)
        assert "client_cert" not in event
        with tls_connect(sp.port, _with_client_cert(certs)) as tls:
            assert exchange(tls, b"named") == b"named"
            peer = _local(tls)
        event = _one(sp, "connected", peer=peer)
        assert event["client_cert"] == "CN=client"
        assert event["authorized"] is True
        assert len(service.peers) == 2


def test_echo_without_a_service(tmp_path: Path) -> None:
    """``--echo`` with the default certificate files of the current folder."""
    fresh = make_certs(tmp_path)
    with ServeProcess("--echo", *HANDSHAKE, cwd=tmp_path) as sp:
        assert sp.listening["service"] == "echo"
        with tls_connect(sp.port, fresh.client_context()) as tls:
            assert exchange(tls, b"echo me\n") == b"echo me\n"
            peer = _local(tls)
        closed = _one(sp, "closed", peer=peer)
        assert (closed["bytes_in"], closed["bytes_out"]) == (8, 8)
        assert sp.stop() == 0


def test_echo_holds_back_a_client_that_does_not_read(tmp_path: Path) -> None:
    """Echoes wait in the socket buffers, not in the server's memory: a
    client that only sends is stopped being read until it reads."""
    fresh = make_certs(tmp_path)
    chunk = b"x" * 65536
    total = 64 << 20
    with ServeProcess("--echo", *HANDSHAKE, cwd=tmp_path) as sp:
        before = rss_kib(sp.proc.pid)
        with tls_connect(sp.port, fresh.client_context()) as tls:
            tls.settimeout(2)
            sent = 0
            with contextlib.suppress(TimeoutError, ssl.SSLWantWriteError):
                while sent < total:
                    tls.sendall(chunk)
                    sent += len(chunk)
            grown = rss_kib(sp.proc.pid) - before
            # Stopped well short of 64 MiB: the kernel's buffers both ways
            # and the adapter's read limits hold a few MiB at most.
            assert sent < total // 2, sent
            assert grown < 24 * 1024, grown
        assert sp.stop() == 0
