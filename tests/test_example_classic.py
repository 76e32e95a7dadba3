"""The classic set-up end to end, as the README shows it: ``gencert``, the
example JSON-RPC daemon, ``securepair serve`` in front, and real clients
(``curl``, ``openssl s_client``, ``securepair connect``)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._tools import require_tool
from tests.serve_harness import ROOT, TIMEOUT, ServeProcess, cli_env, interact

USER, PASSWORD = "alice", "correct horse"
REQUEST = '{"jsonrpc": "2.0", "method": "getinfo", "id": 1}'


@dataclass
class Classic:
    folder: Path
    serve: ServeProcess
    daemon_port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.serve.port}/"


def _cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securepair", *args],
        cwd=cwd, env=cli_env(), input=stdin, capture_output=True, text=True,
        timeout=TIMEOUT * 2, check=False,
    )  # fmt: skip


@pytest.fixture
def classic(tmp_path: Path) -> Iterator[Classic]:
    # Exactly the README's steps: gencert, a config for the daemon, the
    # example daemon (through its examples/ path), serve in front.
    assert _cli("gencert", cwd=tmp_path).returncode == 0
    (tmp_path / "rpc.toml").write_text(f'user = "{USER}"\npassword = "{PASSWORD}"\n')
    daemon = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "jsonrpc_daemon.py"),
         "--listen", "127.0.0.1:0", "--config", "rpc.toml"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert daemon.stdout is not None
        first = daemon.stdout.readline().decode()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert found, first
        port = int(found.group(1))
        with ServeProcess(
            "--forward", f"127.0.0.1:{port}", "--allow", "127.0.0.3", cwd=tmp_path
        ) as serve:
            yield Classic(tmp_path, serve, port)
            serve.stop()
    finally:
        daemon.terminate()
        daemon.wait(TIMEOUT)
        if daemon.stdout is not None:
            daemon.stdout.close()


def _curl(classic: Classic, *args: str) -> subprocess.CompletedProcess[str]:
    curl = require_tool("curl")
    return subprocess.run(
        [curl, "-sS", "--cacert", "server.cert", "-w", "\n%{http_code}", *args, classic.url],
        cwd=classic.folder, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def test_curl_with_credentials_gets_a_json_rpc_answer(classic: Classic) -> None:
    done = _curl(classic, "-u", f"{USER}:{PASSWORD}", "--data", REQUEST)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stderr
    answer = json.loads(body)
    assert answer["id"] == 1 and answer["result"]["server"] == "jsonrpcd"


def test_curl_without_credentials_gets_401(classic: Classic) -> None:
    done = _curl(classic, "--data", REQUEST)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "401", done.stderr
    assert "Authorization Required" in body


def test_openssl_s_client_shows_the_certificate_then_401(classic: Classic) -> None:
    openssl = require_tool("openssl")
    # Two empty lines, typed once the handshake is done: the daemon answers
    # 401 to that, as the classic daemons do.
    out = interact(
        [openssl, "s_client", "-connect", f"127.0.0.1:{classic.serve.port}",
         "-CAfile", "server.cert", "-servername", "localhost"],
        b"\n\n",
        lambda out: b"401 Authorization Required" in out,
        cwd=classic.folder,
    )  # fmt: skip
    text = out.decode("utf-8", "replace")
    assert "subject=CN = localhost" in text or "subject=CN=localhost" in text, text
    assert "-----BEGIN CERTIFICATE-----" in text
    assert "Verify return code: 0 (ok)" in text
    assert "401 Authorization Required" in text.split("-----END CERTIFICATE-----", 1)[1]


def test_client_outside_the_allowlist_is_refused(classic: Classic) -> None:
    import ssl

    ctx = ssl.create_default_context(cafile=str(classic.folder / "server.cert"))
    raw = socket.create_connection(
        ("127.0.0.1", classic.serve.port), timeout=TIMEOUT, source_address=("127.0.0.2", 0)
    )
    with raw, pytest.raises((ssl.SSLError, OSError)):
        ctx.wrap_socket(raw, server_hostname="localhost")
    refused = classic.serve.wait_for(lambda e: e["event"] == "refused")
    assert refused["peer"].startswith("127.0.0.2:")
    assert refused["reason"] == "not in --allow"
    # An address on the allowlist is served.
    with (
        socket.create_connection(
            ("127.0.0.1", classic.serve.port), timeout=TIMEOUT, source_address=("127.0.0.3", 0)
        ) as raw3,
        ctx.wrap_socket(raw3, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_securepair_connect_pins_server_cert(classic: Classic) -> None:
    port = str(classic.serve.port)
    done = _cli("connect", "--ca", "server.cert", "--json", f"localhost:{port}", cwd=classic.folder)
    assert done.returncode == 0, done.stderr
    details = json.loads(done.stdout)
    assert details["authorized"] is True
    human = _cli("connect", "--ca", "server.cert", f"localhost:{port}", cwd=classic.folder)
    assert "authorized: true" in human.stdout + human.stderr


def test_securepair_connect_with_another_ca_says_why_not(classic: Classic) -> None:
    other = classic.folder / "other"
    other.mkdir()
    assert _cli("gencert", "--dir", str(other), "--ca", cwd=classic.folder).returncode == 0
    port = str(classic.serve.port)
    done = _cli("connect", "--ca", str(other / "ca.cert"), f"localhost:{port}", cwd=classic.folder)
    said = done.stdout + done.stderr
    assert "authorized: false" in said
    # gencert's certificate is self-signed: Node's code for that, in words too.
    assert "DEPTH_ZERO_SELF_SIGNED_CERT" in said, said
    assert done.returncode != 0


def test_the_daemon_is_not_reachable_without_tls(classic: Classic) -> None:
    """The daemon itself listens on 127.0.0.1 only; over serve's port a
    plaintext request gets serve's answer, never the daemon's."""
    with socket.create_connection(("127.0.0.1", classic.serve.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        answer = b""
        deadline = time.monotonic() + TIMEOUT
        while (chunk := sock.recv(4096)) and time.monotonic() < deadline:
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"speaks TLS" in answer
    assert os.path.exists(classic.serve.log_path)
