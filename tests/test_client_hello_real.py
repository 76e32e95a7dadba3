"""ClientHellos from real TLS clients, captured at test time.

A plain TCP socket on 127.0.0.1 accepts one connection, reads until the
Python framer says the ClientHello is complete, and hangs up (the client
then fails its handshake, which is expected).  The parser must report the
server name and ALPN list each client was told to send, say whether the
client offers TLS 1.3, and the C framer must agree with the Python one.

Clients: ``openssl s_client`` (TLS 1.2 and 1.3), ``gnutls-cli``, ``curl``
and Python's own :mod:`ssl`.  A missing program skips its test locally and
fails it under CI (tests/_tools.py).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from typing import TYPE_CHECKING

import pytest

from securepair.records import ClientHello
from securepair.records import python as py_framer

from ._tools import IN_CI, require_tool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import ModuleType

TIMEOUT = 15.0


def framers() -> list[ModuleType]:
    """The Python framer, and the C one when it is built (it must be under CI)."""
    try:
        from securepair.records import c
    except ImportError as exc:
        if IN_CI or getattr(exc, "mismatch", False):
            pytest.fail(f"the C framer does not load: {exc}", pytrace=False)
        return [py_framer]
    return [py_framer, c]


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.settimeout(TIMEOUT)
        yield sock
    finally:
        sock.close()


def read_client_hello(sock: socket.socket) -> bytes:
    """Accept one connection; return its bytes once they hold a whole ClientHello."""
    conn, _ = sock.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        data = bytearray()
        while not isinstance(py_framer.parse_client_hello(data), ClientHello):
            chunk = conn.recv(65536)
            if not chunk:
                raise AssertionError(
                    f"client hung up before its ClientHello was complete: {data!r}"
                )
            data += chunk
        return bytes(data)


def capture_from_command(argv_for_port: Callable[[int], Sequence[str]]) -> bytes:
    """Run a client command against the listener and return its ClientHello."""
    with listener() as sock:
        port = sock.getsockname()[1]
        argv = list(argv_for_port(port))
        # The context manager closes the pipe and reaps the process however
        # this block is left (an unclosed pipe is a ResourceWarning, an error
        # under this suite's filterwarnings).
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as proc:
            try:
                data = read_client_hello(sock)
            except (TimeoutError, AssertionError) as exc:
                proc.kill()
                output = proc.communicate(timeout=TIMEOUT)[0].decode(errors="replace")
                raise AssertionError(
                    f"no ClientHello from {' '.join(argv)}: {exc}\noutput:\n{output}"
                ) from exc
            # We hung up, so the client ends on its own; do not wait forever.
            try:
                proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            return data


def capture_from_python(context: ssl.SSLContext, server_hostname: str | None) -> bytes:
    """Python's ssl module as the client, in a thread."""
    errors: list[BaseException] = []

    def client(port: int) -> None:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname=server_hostname),
            ):
                pass  # pragma: no cover - the server hangs up first
        except (ssl.SSLError, OSError):
            pass  # expected: we hang up instead of answering
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with listener() as sock:
        thread = threading.Thread(target=client, args=(sock.getsockname()[1],), daemon=True)
        thread.start()
        try:
            return read_client_hello(sock)
        finally:
            thread.join(TIMEOUT)
            assert not errors, errors


def check(data: bytes, server_name: str | None, alpn: Sequence[str], tls13: bool) -> ClientHello:
    """Parse with every framer: same answer, and the one the client was told."""
    results = [framer.parse_client_hello(data) for framer in framers()]
    hello = results[0]
    assert isinstance(hello, ClientHello)
    for other in results[1:]:
        assert other == hello
    assert hello.server_name == server_name
    assert hello.alpn_protocols == tuple(alpn)
    assert hello.is_tls13 is tls13
    assert hello.end == len(data)
    # Every client here speaks TLS 1.2 at least and sends the usual lists.
    assert hello.legacy_version == 0x0303
    assert hello.cipher_suites
    assert hello.signature_algorithms
    # Every shorter prefix is still waiting for bytes, whichever framer reads it.
    for framer in framers():
        for cut in range(0, len(data), 7):
            assert not isinstance(framer.parse_client_hello(data[:cut]), ClientHello)
    return hello


# --------------------------------------------------------------------------
# openssl s_client


@pytest.mark.peer("openssl")
@pytest.mark.parametrize(
    ("flag", "tls13"), [("-tls1_3", True), ("-tls1_2", False)], ids=["tls1.3", "tls1.2"]
)
def test_openssl_s_client(flag: str, tls13: bool) -> None:
    openssl = require_tool("openssl", package="openssl")
    data = capture_from_command(
        lambda port: [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "openssl.example.test",
            "-alpn",
            "h2,http/1.1",
            flag,
        ]
    )
    hello = check(data, "openssl.example.test", ("h2", "http/1.1"), tls13)
    if tls13:
        assert 0x1301 in hello.cipher_suites
        assert 51 in hello.extensions  # key_share


@pytest.mark.peer("openssl")
def test_openssl_s_client_without_sni_or_alpn() -> None:
    openssl = require_tool("openssl", package="openssl")
    data = capture_from_command(
        lambda port: [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-noservername"]
    )
    check(data, None, (), True)


# --------------------------------------------------------------------------
# gnutls-cli


@pytest.mark.peer("gnutls-cli")
def test_gnutls_cli() -> None:
    gnutls = require_tool("gnutls-cli", package="gnutls-bin")
    data = capture_from_command(
        lambda port: [
            gnutls,
            "--port",
            str(port),
            "--sni-hostname",
            "gnutls.example.test",
            "--alpn",
            "h2",
            "--alpn",
            "http/1.1",
            "127.0.0.1",
        ]
    )
    check(data, "gnutls.example.test", ("h2", "http/1.1"), True)


@pytest.mark.peer("gnutls-cli")
def test_gnutls_cli_tls12_only() -> None:
    gnutls = require_tool("gnutls-cli", package="gnutls-bin")
    data = capture_from_command(
        lambda port: [
            gnutls,
            "--port",
            str(port),
            "--sni-hostname",
            "gnutls12.example.test",
            "--alpn",
            "http/1.1",
            "--priority",
            "NORMAL:-VERS-ALL:+VERS-TLS1.2",
            "127.0.0.1",
        ]
    )
    check(data, "gnutls12.example.test", ("http/1.1",), False)


# --------------------------------------------------------------------------
# curl


def _curl(port: int, curl: str, *flags: str) -> list[str]:
    host = "curl.example.test"
    return [
        curl,
        "--silent",
        "--max-time",
        str(int(TIMEOUT)),
        "--resolve",
        f"{host}:{port}:127.0.0.1",
        *flags,
        f"https://{host}:{port}/",
    ]


@pytest.mark.peer("curl")
def test_curl_http11() -> None:
    curl = require_tool("curl", package="curl")
    data = capture_from_command(lambda port: _curl(port, curl, "--http1.1"))
    check(data, "curl.example.test", ("http/1.1",), True)


@pytest.mark.peer("curl")
def test_curl_http2() -> None:
    curl = require_tool("curl", package="curl")
    features = subprocess.run([curl, "--version"], capture_output=True, text=True, check=True)
    if "HTTP2" not in features.stdout:
        pytest.skip("this curl is built without HTTP/2")
    data = capture_from_command(lambda port: _curl(port, curl, "--http2"))
    check(data, "curl.example.test", ("h2", "http/1.1"), True)


# --------------------------------------------------------------------------
# Python's ssl


def test_python_ssl() -> None:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2", "http/1.1", "acme-tls/1"])
    data = capture_from_python(context, "python.example.test")
    check(data, "python.example.test", ("h2", "http/1.1", "acme-tls/1"), True)


def test_python_ssl_tls12_no_alpn() -> None:
    context = ssl.create_default_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    data = capture_from_python(context, "python12.example.test")
    check(data, "python12.example.test", (), False)


def test_python_ssl_ip_address_sends_no_sni() -> None:
    """RFC 6066 3: literal IP addresses are not sent as SNI."""
    context = ssl.create_default_context()
    data = capture_from_python(context, "127.0.0.1")
    check(data, None, (), True)
