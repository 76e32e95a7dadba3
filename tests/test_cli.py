"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from securepair import SecurePair, TLSConfig
from securepair.testing.link import Link

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "securepair", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def _demo_folder(out: str) -> Path:
    found = re.search(r"certificate for localhost in (\S+)", out)
    assert found, out
    return Path(found.group(1))


def test_demo_runs_over_sockets_and_narrates() -> None:
    started = time.monotonic()
    done = run_cli("demo")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 10, f"the demo took {elapsed:.1f} s"
    out = done.stdout
    # SMTP: the plaintext phase, where TLS began, and the rest inside TLS.
    assert "  C: STARTTLS\n  S: 220 2.0.0 Ready to start TLS\n  -- TLS begins" in out
    assert "C: EHLO demo.client   (inside TLS)" in out
    assert "S: 250 2.0.0 Ok: queued" in out
    # The certificate and the verdict, as the client saw them.
    assert "server certificate: CN=localhost, issued by CN=securepair demo CA" in out
    assert "authorized: true" in out
    assert re.search(r"TLS begins at once \(HTTPS\): TLSv1\.[23], \S+, ALPN none", out)
    # JSON-RPC behind serve: refused without credentials, answered with them.
    assert "S: HTTP/1.1 401 Authorization Required" in out
    assert re.search(r'S: HTTP/1\.1 200 OK  \{"jsonrpc":"2\.0","result":\{"version"', out)
    # serve's own log lines show both connections.
    assert out.count(" connected 127.0.0.1:") == 2
    # Cleaned up: the folder is gone, and no helper process is left.
    assert not _demo_folder(out).exists()
    leftover = subprocess.run(
        ["pgrep", "-f", str(_demo_folder(out))], capture_output=True, check=False
    )
    assert leftover.stdout == b""


def test_demo_tls12_and_keep(tmp_path: Path) -> None:
    done = run_cli("demo", "--tls-version", "TLSv1.2", "--keep")
    assert done.returncode == 0, done.stderr
    assert "TLSv1.2, ECDHE-" in done.stdout
    folder = _demo_folder(done.stdout)
    try:
        assert f"kept in {folder}" in done.stdout
        assert {"ca.cert", "server.cert", "server.pem", "serve.log"} <= {
            p.name for p in folder.iterdir()
        }
        assert stat.S_IMODE((folder / "server.pem").stat().st_mode) == 0o600
    finally:
        shutil.rmtree(folder)


def test_gencert_makes_a_pinnable_self_signed_pair(tmp_path: Path) -> None:
    done = run_cli("gencert", "--dir", str(tmp_path), "--host", "api.example.test")
    assert done.returncode == 0, done.stderr
    cert_pem = (tmp_path / "server.cert").read_bytes()
    key_path = tmp_path / "server.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName)
    assert "localhost" in names and "api.example.test" in names
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    # A client that copied server.cert is authorized.
    client = SecurePair(TLSConfig(ca=cert_pem), server_side=False, server_hostname="localhost")
    server = SecurePair(TLSConfig(cert=tmp_path / "server.cert", key=key_path), server_side=True)
    Link(client, server).handshake()
    assert client.authorized


def test_gencert_never_overwrites_without_force(tmp_path: Path) -> None:
    assert run_cli("gencert", "--dir", str(tmp_path)).returncode == 0
    before = (tmp_path / "server.pem").read_bytes()
    again = run_cli("gencert", "--dir", str(tmp_path))
    assert again.returncode == 1
    assert "already exist" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "server.pem").read_bytes() == before
    forced = run_cli("gencert", "--dir", str(tmp_path), "--force")
    assert forced.returncode == 0
    assert (tmp_path / "server.pem").read_bytes() != before


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_gencert_ca_signs_server_and_client(tmp_path: Path, key_type: str) -> None:
    done = run_cli("gencert", "--dir", str(tmp_path), "--ca", "--key-type", key_type)
    assert done.returncode == 0, done.stderr
    for private in ("ca.pem", "server.pem", "client.pem"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600
    if key_type == "ecdsa":
        leaf = x509.load_pem_x509_certificate((tmp_path / "server.cert").read_bytes())
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    client = SecurePair(
        TLSConfig(
            ca=tmp_path / "ca.cert",
            cert=tmp_path / "client.cert",
            key=tmp_path / "client.pem",
        ),
        server_side=False,
        server_hostname="127.0.0.1",
    )
    server = SecurePair(
        TLSConfig(
            cert=tmp_path / "server.cert",
            key=tmp_path / "server.pem",
            ca=tmp_path / "ca.cert",
            request_cert=True,
        ),
        server_side=True,
    )
    Link(client, server).handshake()
    assert client.authorized and server.authorized
    assert server.peer_certificate()["subject"] == {"CN": "client"}  # type: ignore[index]


def test_gencert_bad_folder_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("gencert", "--dir", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "is not a folder" in done.stderr
