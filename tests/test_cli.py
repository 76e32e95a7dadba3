"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
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


def test_demo_runs_and_narrates() -> None:
    done = run_cli("demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "handshake complete: TLSv1.3" in out
    assert "authorized=True" in out
    assert "read cleartext b'GET /hello\\r\\n'" in out
    assert "clean close" in out


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
