"""Run the classic set-up on 127.0.0.1 and narrate it: SMTP upgraded with
STARTTLS, then JSON-RPC over HTTPS behind ``securepair serve``.

Needs no set-up, no network and no files: in a temporary folder it makes a
CA and a server certificate, starts an SMTP server that offers STARTTLS, a
JSON-RPC daemon with HTTP Basic auth and ``securepair serve`` in front of
it, runs a client through each (one JSON-RPC call refused with 401 without
credentials, one that succeeds with them), prints who said what and where
TLS began, stops everything and removes the folder.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from .. import certgen
from ..config import TLSConfig
from ..socket import TLSSocket
from ..starttls.smtp import SMTPClient, SMTPServer
from ..starttls.socket import StartTLSSocket, starttls_client_socket, starttls_server_socket

HELP = "run SMTP STARTTLS and JSON-RPC behind `securepair serve` on 127.0.0.1, narrated"

#: Seconds any one step may take before the demo gives up on it.
STEP_TIMEOUT = 10.0

_USER = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``demo``."""
    parser.add_argument(
        "--tls-version",
        choices=["TLSv1.2", "TLSv1.3"],
        default=None,
        help="the highest TLS version the clients offer (default: the newest)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (certificates, logs) and print where it is",
    )


class _Transcript:
    """Prints the conversation: ``C:`` for the client, ``S:`` for servers."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def wire(self, who: str, data: bytes, note: str = "") -> None:
        for raw in data.splitlines():
            text = raw.decode("utf-8", "replace")
            self.line(f"  {who}: {text}{note}")
            note = ""

    def tls(self, sock: TLSSocket, *, where: str) -> None:
        version = sock.version()
        cipher = sock.cipher()[0]
        self.line(
            f"  -- TLS begins {where}: {version}, {cipher}, ALPN {sock.alpn_protocol or 'none'}"
        )
        cert: Any = sock.peer_certificate()
        if cert:
            subject = ", ".join(f"{k}={v}" for k, v in cert["subject"].items())
            issuer = ", ".join(f"{k}={v}" for k, v in cert["issuer"].items())
            self.line(f"     server certificate: {subject}, issued by {issuer}")
            self.line(f"       {cert.get('subjectaltname', '')}; valid to {cert['valid_to']}")
        error = sock.authorization_error
        self.line(
            f"     authorized: {str(sock.authorized).lower()}"
            + (f" ({error})" if error else " (the chain ends at the demo CA the client trusts)")
        )


class _RecordingSMTPClient(SMTPClient):
    """The SMTP client negotiator, printing the plaintext it sends and gets."""

    def __init__(self, transcript: _Transcript) -> None:
        super().__init__(local_hostname="demo.client")
        self._transcript = transcript

    def data_to_send(self) -> bytes:
        out = super().data_to_send()
        if out:
            self._transcript.wire("C", out)
        return out

    def receive_data(self, data: Any) -> None:
        if data:
            self._transcript.wire("S", bytes(data))
        super().receive_data(data)


def _smtp_server(listener: socket.socket, config: TLSConfig, errors: list[BaseException]) -> None:
    """A small SMTP server that requires STARTTLS, for one client."""
    try:
        conn, _ = listener.accept()
        conn.settimeout(STEP_TIMEOUT)
        negotiator = SMTPServer(
            hostname="localhost",
            greeting="ESMTP securepair demo",
            capabilities=["PIPELINING", "8BITMIME"],
            tls_capabilities=["PIPELINING", "8BITMIME", "AUTH PLAIN"],
        )
        tls = starttls_server_socket(conn, negotiator, config, timeout=STEP_TIMEOUT)
        with tls, tls.makefile("rb") as lines:
            in_data = False
            for line in lines:
                if in_data:
                    if line in (b".\r\n", b".\n"):
                        in_data = False
                        tls.sendall(b"250 2.0.0 Ok: queued\r\n")
                    continue
                answer = negotiator.answer_in_tls(line)
                verb = line[:4].upper()
                if answer is not None:
                    tls.sendall(answer)
                elif verb in (b"MAIL", b"RCPT"):
                    tls.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"DATA":
                    in_data = True
                    tls.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                elif verb == b"QUIT":
                    tls.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    tls.sendall(b"502 5.5.2 Command not recognized\r\n")
    except BaseException as exc:  # reported by the client side of the demo
        errors.append(exc)


def _smtp_demo(t: _Transcript, server_config: TLSConfig, client_config: TLSConfig) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []
    thread = threading.Thread(
        target=_smtp_server, args=(listener, server_config, errors), daemon=True
    )
    thread.start()
    port = listener.getsockname()[1]
    t.line(f"SMTP server with STARTTLS on 127.0.0.1:{port}")
    tls: StartTLSSocket = starttls_client_socket(
        ("127.0.0.1", port),
        _RecordingSMTPClient(t),
        client_config,
        server_hostname="localhost",
        timeout=STEP_TIMEOUT,
        followup=False,
    )
    with tls:
        t.tls(tls, where="after the 220 to STARTTLS")
        with tls.makefile("rb") as replies:

            def say(command: bytes) -> None:
                t.wire("C", command, "   (inside TLS)" if command.startswith(b"EHLO") else "")
                tls.sendall(command)
                while True:
                    reply = replies.readline()
                    t.wire("S", reply)
                    if not reply or reply[3:4] != b"-":
                        break

            say(b"EHLO demo.client\r\n")
            say(b"MAIL FROM:<demo@example.org>\r\n")
            say(b"RCPT TO:<you@example.org>\r\n")
            say(b"DATA\r\n")
            say(b"Subject: hello\r\n\r\nSent over TLS.\r\n.\r\n")
            say(b"QUIT\r\n")
    thread.join(STEP_TIMEOUT)
    listener.close()
    if errors:
        raise errors[0]


@contextmanager
def _process(
    args: list[str], ready: str, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start a helper process whose log goes to ``log_path``; wait for a log
    line matching ``ready`` and yield it; stop the process afterwards."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        pattern = re.compile(ready)
        while True:
            found = pattern.search(log_path.read_text("utf-8", "replace"))
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{args[2]} did not start: {log_path.read_text('utf-8', 'replace').strip()}"
                )
            time.sleep(0.02)
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _http(tls: TLSSocket, body: bytes, auth: str | None) -> tuple[str, bytes]:
    headers = [
        "POST / HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth is not None:
        headers.append("Authorization: Basic " + base64.b64encode(auth.encode()).decode())
    tls.sendall(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    with tls.makefile("rb") as reader:
        status = reader.readline().decode().strip()
        length = 0
        while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, reader.read(length)


def _rpc_demo(t: _Transcript, folder: Path, client_config: TLSConfig, password: str) -> str:
    (folder / "rpc.toml").write_text(f'user = "{_USER}"\npassword = "{password}"\n')
    python = sys.executable
    with ExitStack() as stack:
        _, rpc_address = stack.enter_context(
            _process(
                [
                    python,
                    "-m",
                    "securepair.cli.jsonrpcd",
                    "--listen",
                    "127.0.0.1:0",
                    "--config",
                    str(folder / "rpc.toml"),
                ],
                r"listening on (\S+)",
                folder / "jsonrpcd.log",
            )
        )
        _, serve_address = stack.enter_context(
            _process(
                [
                    python,
                    "-m",
                    "securepair",
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--forward",
                    rpc_address,
                    "--data-dir",
                    str(folder),
                ],
                r" listening (\S+)",
                folder / "serve.log",
            )
        )
        host, _, port = serve_address.rpartition(":")
        t.line(f"JSON-RPC daemon (plaintext, Basic auth) on {rpc_address}")
        t.line(f"securepair serve on {serve_address}, relaying to it")
        request = json.dumps({"jsonrpc": "2.0", "method": "getinfo", "id": 1}).encode()
        for auth in (None, f"{_USER}:{password}"):
            raw = socket.create_connection((host, int(port)), timeout=STEP_TIMEOUT)
            with TLSSocket(raw, client_config, server_hostname="localhost") as tls:
                if auth is None:
                    t.tls(tls, where="at once (HTTPS)")
                shown = "no credentials" if auth is None else f"Basic {_USER}:****"
                t.wire("C", b"POST / HTTP/1.1  (" + shown.encode() + b") " + request)
                status, body = _http(tls, request, auth)
                t.wire("S", status.encode() + b"  " + body.strip())
        # Let serve log the second connection's end before it is stopped.
        time.sleep(0.1)
    return (folder / "serve.log").read_text("utf-8", "replace")


def run(args: argparse.Namespace) -> int:
    """Run ``securepair demo``."""
    return run_demo(max_version=args.tls_version, keep=args.keep)


def run_demo(
    max_version: str | None = None, *, keep: bool = False, out: IO[str] | None = None
) -> int:
    """Run the demo, printing the transcript; returns the exit status."""
    started = time.monotonic()
    t = _Transcript(out or sys.stdout)
    with ExitStack() as stack:
        if keep:
            folder = Path(tempfile.mkdtemp(prefix="securepair-demo-"))
        else:
            folder = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="securepair-demo-"))
            )
        ca = certgen.CertificateAuthority("securepair demo CA")
        leaf = ca.issue(["localhost", "127.0.0.1"])
        (folder / "ca.cert").write_bytes(ca.cert_pem)
        (folder / "server.cert").write_bytes(leaf.cert_pem)
        key_path = folder / "server.pem"
        key_path.touch(0o600)
        key_path.write_bytes(leaf.key_pem)
        t.line("securepair demo: the classic set-up on 127.0.0.1, with TLS in front")
        t.line(f"  made a CA and a server certificate for localhost in {folder}")
        t.line()
        server_config = TLSConfig(cert=leaf.cert_pem, key=leaf.key_pem)
        client_config = TLSConfig(ca=ca.cert_pem, max_version=max_version)
        _smtp_demo(t, server_config, client_config)
        t.line()
        password = base64.urlsafe_b64encode(os.urandom(12)).decode()
        serve_log = _rpc_demo(t, folder, client_config, password)
        t.line()
        t.line("securepair serve's log:")
        for line in serve_log.splitlines():
            if " connected " in line or " closed " in line or " listening " in line:
                t.line("  " + line.split(" ", 2)[2])
        t.line()
        where = f"kept in {folder}" if keep else "temporary folder removed"
        t.line(f"done in {time.monotonic() - started:.1f} s; servers stopped, {where}")
    return 0
