"""Our STARTTLS clients against real servers, over 127.0.0.1.

Each server is started once per session by a fixture, from a config
written at test time into a private 0755 directory in /tmp (see
/work/shared/PEERS.md for the recipes and their traps), listens on
127.0.0.1 on a free port, and is always stopped.  Every test goes past the
handshake and uses the session, to prove it is usable:

* **aiosmtpd** (in-process, ``require_starttls=True``) and **Postfix**: a
  message is sent after the upgrade; the server saw it over TLS.
* **Dovecot**: IMAP (LOGIN, SELECT, APPEND), POP3 (USER/PASS, STAT) and
  ManageSieve (AUTHENTICATE, PUTSCRIPT, LISTSCRIPTS) after the upgrade.
  Dovecot treats a loopback client whose address equals the server's as
  secured, so the TLS-required behaviour is shown from 127.0.0.2.
* **PostgreSQL 15** (``ssl = on``, ``hostnossl ... reject``): the
  SSLRequest, then a StartupMessage and a query inside TLS, and the server
  itself reporting the connection as SSL.

Both adapters run: the blocking socket helper and the asyncio streams one.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from securepair.starttls import (
    IMAPClient,
    ManageSieveClient,
    POP3Client,
    PostgreSQLClient,
    SMTPClient,
)
from securepair.starttls.asyncio import open_starttls_connection
from securepair.starttls.socket import StartTLSSocket, starttls_client_socket

from ._tools import IN_CI, require_tool
from .starttls_peers import PKI, WAIT, free_port, make_pki, port_open, private_dir, wait_until


@pytest.fixture(scope="session")
def pki() -> Iterator[PKI]:
    with make_pki() as made:
        yield made


def _require(ok: bool, message: str) -> None:
    """Skip locally, fail in CI (where .ci/run installs everything)."""
    if not ok:
        if IN_CI:
            pytest.fail(f"{message}; .ci/run must provide it", pytrace=False)
        pytest.skip(message)


def _require_root() -> None:
    # The servers drop privileges to their own users (postfix, dovecot,
    # postgres): only root can start them this way.
    _require(os.geteuid() == 0, "starting Postfix, Dovecot and PostgreSQL needs root")


def _reply(reader: Any, prefix: bytes) -> list[bytes]:
    """Lines up to and including the first that starts with ``prefix``."""
    lines = []
    while True:
        line = reader.readline(65536)
        assert line, f"EOF while waiting for {prefix!r}: {lines}"
        lines.append(line)
        if line.startswith(prefix):
            return lines


MESSAGE = (
    b"From: a@example.org\r\nTo: b@localhost\r\nSubject: securepair STARTTLS\r\n\r\n"
    b"sent after the upgrade\r\n"
)


def _smtp_send(tls: StartTLSSocket, rcpt: bytes = b"b@localhost") -> bytes:
    """MAIL, RCPT, DATA inside TLS; returns the final reply."""
    reader = tls.makefile("rb")
    try:
        for command, code in (
            (b"MAIL FROM:<a@example.org>\r\n", b"250 "),
            (b"RCPT TO:<" + rcpt + b">\r\n", b"250 "),
            (b"DATA\r\n", b"354 "),
        ):
            tls.sendall(command)
            last = _reply(reader, code[:3])[-1]
            assert last.startswith(code), (command, last)
        tls.sendall(MESSAGE + b".\r\n")
        done = _reply(reader, b"250")[-1]
        tls.sendall(b"QUIT\r\n")
        assert _reply(reader, b"221")
        return done
    finally:
        reader.close()


# ----------------------------------------------------------------------
# aiosmtpd


@dataclass
class _Inbox:
    messages: list[tuple[bytes, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.content, session.ssl is not None))
        return "250 OK queued"


@dataclass
class AiosmtpdServer:
    port: int
    inbox: _Inbox


@pytest.fixture(scope="session")
def aiosmtpd_server(pki: PKI) -> Iterator[AiosmtpdServer]:
    try:
        from aiosmtpd import controller as controller_mod
    except ImportError:
        _require(False, "aiosmtpd is not installed (pip install '.[test]')")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    inbox = _Inbox()
    port = free_port()  # Controller(port=0) fails its own self-check
    controller = controller_mod.Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        ready_timeout=WAIT,
    )
    controller.start()
    try:
        yield AiosmtpdServer(port, inbox)
    finally:
        controller.stop()


def test_aiosmtpd_requires_starttls(aiosmtpd_server: AiosmtpdServer) -> None:
    """The server really refuses mail in plaintext (so the next tests prove
    that our upgrade is what made it accept)."""
    with socket.create_connection(("127.0.0.1", aiosmtpd_server.port), timeout=WAIT) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client\r\n")
        assert any(b"STARTTLS" in line for line in _reply(reader, b"250 "))
        sock.sendall(b"MAIL FROM:<a@example.org>\r\n")
        assert reader.readline().startswith(b"530")
        reader.close()


def test_aiosmtpd_socket(pki: PKI, aiosmtpd_server: AiosmtpdServer) -> None:
    before = len(aiosmtpd_server.inbox.messages)
    with starttls_client_socket(
        ("127.0.0.1", aiosmtpd_server.port),
        SMTPClient(local_hostname="client.example.org"),
        pki.client_config(),
        timeout=WAIT,
    ) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        caps = tls.capabilities
        assert caps is not None
        assert not any(c.upper().startswith("STARTTLS") for c in caps)  # EHLO inside TLS
        assert _smtp_send(tls).startswith(b"250")
    content, over_tls = aiosmtpd_server.inbox.messages[before]
    assert over_tls
    assert b"sent after the upgrade" in content


def test_aiosmtpd_asyncio_streams(pki: PKI, aiosmtpd_server: AiosmtpdServer) -> None:
    async def main() -> None:
        reader, writer = await open_starttls_connection(
            "127.0.0.1",
            aiosmtpd_server.port,
            protocol="smtp",
            config=pki.client_config(),
            timeout=WAIT,
        )
        assert writer.capabilities is not None
        assert "STARTTLS" not in writer.capabilities
        async with asyncio.timeout(WAIT):
            for command in (b"MAIL FROM:<a@example.org>", b"RCPT TO:<c@localhost>", b"DATA"):
                writer.write(command + b"\r\n")
                reply = await reader.readline()
                assert reply[:1] in (b"2", b"3"), reply
            writer.write(MESSAGE + b".\r\nQUIT\r\n")
            assert (await reader.readline()).startswith(b"250")
            assert (await reader.readline()).startswith(b"221")
        writer.close()
        await writer.wait_closed()

    before = len(aiosmtpd_server.inbox.messages)
    asyncio.run(main())
    content, over_tls = aiosmtpd_server.inbox.messages[before]
    assert over_tls and b"sent after the upgrade" in content


# ----------------------------------------------------------------------
# Postfix

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = @DIR@/queue
data_directory = @DIR@/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = localhost
mydestination = localhost
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
default_transport = discard
local_transport = discard
relay_transport = discard
smtpd_tls_cert_file = @DIR@/conf/cert.pem
smtpd_tls_key_file = @DIR@/conf/key.pem
smtpd_tls_security_level = encrypt
smtpd_tls_loglevel = 1
maillog_file = @DIR@/maillog
maillog_file_prefixes = @DIR@
"""

POSTFIX_MASTER_CF = """\
127.0.0.1:@PORT@ inet n - n - - smtpd
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
error     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
postlog   unix-dgram n - n - 1 postlogd
"""


def _fill(template: str, **values: Any) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    return template


def _pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie left for PID 1 counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


@dataclass
class PostfixServer:
    port: int
    dir: Path

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def postfix_server(pki: PKI) -> Iterator[PostfixServer]:
    postfix = require_tool("postfix", package="postfix")
    _require_root()
    base = private_dir("sp-pf-")
    conf = base / "conf"
    conf.mkdir()
    (base / "queue").mkdir()
    data = base / "data"
    data.mkdir()
    shutil.chown(data, "postfix")
    shutil.copy(pki.cert_file, conf / "cert.pem")
    shutil.copy(pki.key_file, conf / "key.pem")
    port = free_port()
    (conf / "main.cf").write_text(_fill(POSTFIX_MAIN_CF, DIR=base))
    (conf / "master.cf").write_text(_fill(POSTFIX_MASTER_CF, PORT=port))
    # Postfix re-reads a main.cf younger than about 2 s on every command.
    old = time.time() - 60
    for name in ("main.cf", "master.cf"):
        os.utime(conf / name, (old, old))
    run = [postfix, "-c", str(conf)]
    started = subprocess.run([*run, "start"], capture_output=True, timeout=WAIT, check=False)
    try:
        assert started.returncode == 0, started.stderr.decode(errors="replace")
        wait_until(lambda: port_open(port), "Postfix to listen")
        yield PostfixServer(port, base)
    finally:
        pid_file = base / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        subprocess.run([*run, "stop"], capture_output=True, timeout=WAIT, check=False)
        if pid is not None:
            wait_until(lambda: _pid_gone(pid), "Postfix's master to exit")
        shutil.rmtree(base, ignore_errors=True)


def test_postfix_socket(pki: PKI, postfix_server: PostfixServer) -> None:
    with starttls_client_socket(
        ("127.0.0.1", postfix_server.port),
        SMTPClient(local_hostname="client.example.org"),
        pki.client_config(),
        server_hostname="localhost",
        timeout=WAIT,
    ) as tls:
        caps = tls.capabilities
        assert caps is not None and caps  # EHLO keywords asked inside TLS
        assert not any(c.upper().startswith("STARTTLS") for c in caps)
        final = _smtp_send(tls, b"postfix-test@localhost")
        assert final.startswith(b"250"), final
    # postlogd writes the log asynchronously: wait for the delivery line.
    wait_until(
        lambda: (
            re.search(r"to=<postfix-test@localhost>.*status=sent", postfix_server.log()) is not None
        ),
        "Postfix to log the delivery",
    )
    assert "TLS connection established from" in postfix_server.log()


def test_postfix_refuses_plaintext_mail(postfix_server: PostfixServer) -> None:
    """``smtpd_tls_security_level = encrypt``: mail without STARTTLS is
    refused, so the delivery above happened because of our upgrade."""
    with socket.create_connection(("127.0.0.1", postfix_server.port), timeout=WAIT) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.example.org\r\n")
        _reply(reader, b"250 ")
        sock.sendall(b"MAIL FROM:<a@example.org>\r\n")
        assert reader.readline().startswith(b"530")
        reader.close()


# ----------------------------------------------------------------------
# Dovecot

DOVECOT_CONF = """\
instance_name = dovecot-@IMAP_PORT@
base_dir = @DIR@/run
state_dir = @DIR@/state
protocols = imap pop3 sieve
listen = 127.0.0.1
log_path = @DIR@/dovecot.log
ssl = yes
ssl_cert = <@DIR@/cert.pem
ssl_key = <@DIR@/key.pem
auth_failure_delay = 0
mail_location = maildir:@DIR@/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u @DIR@/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=@DIR@/mail/%u
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = @IMAP_PORT@
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = @POP3_PORT@
  }
  inet_listener pop3s {
    port = 0
  }
}
service managesieve-login {
  inet_listener sieve {
    port = @SIEVE_PORT@
  }
}
"""

USER, PASSWORD = "testuser", "testpass"


@dataclass
class DovecotServer:
    imap: int
    pop3: int
    sieve: int


@pytest.fixture(scope="session")
def dovecot_server(pki: PKI) -> Iterator[DovecotServer]:
    dovecot = require_tool("dovecot", package="dovecot-core")
    _require_root()
    base = private_dir("sp-dc-")
    shutil.copy(pki.cert_file, base / "cert.pem")
    shutil.copy(pki.key_file, base / "key.pem")
    mail = base / "mail"
    mail.mkdir()
    shutil.chown(mail, "nobody", "nogroup")
    (base / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    ports = DovecotServer(free_port(), free_port(), free_port())
    conf = base / "dovecot.conf"
    conf.write_text(
        _fill(
            DOVECOT_CONF,
            DIR=base,
            IMAP_PORT=ports.imap,
            POP3_PORT=ports.pop3,
            SIEVE_PORT=ports.sieve,
        )
    )
    process = subprocess.Popen(
        [dovecot, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(
            lambda: (
                process.poll() is not None
                or all(port_open(p) for p in (ports.imap, ports.pop3, ports.sieve))
            ),
            "Dovecot to listen",
        )
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield ports
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)
        if process.stderr:
            process.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


def _imap(reader: Any, tls: StartTLSSocket, tag: bytes, command: bytes) -> list[bytes]:
    tls.sendall(tag + b" " + command + b"\r\n")
    lines = _reply(reader, tag + b" ")
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines


def test_dovecot_imap_socket(pki: PKI, dovecot_server: DovecotServer) -> None:
    with starttls_client_socket(
        ("127.0.0.1", dovecot_server.imap), IMAPClient(), pki.client_config(), timeout=WAIT
    ) as tls:
        caps = tls.capabilities
        assert caps is not None
        assert "IMAP4rev1" in caps
        assert "STARTTLS" not in caps  # CAPABILITY asked again inside TLS
        assert "AUTH=PLAIN" in caps
        reader = tls.makefile("rb")
        _imap(reader, tls, b"a3", f"LOGIN {USER} {PASSWORD}".encode())
        _imap(reader, tls, b"a4", b"SELECT INBOX")
        tls.sendall(b"a5 APPEND INBOX {%d}\r\n" % len(MESSAGE))
        assert reader.readline().startswith(b"+")
        tls.sendall(MESSAGE + b"\r\n")
        appended = _reply(reader, b"a5 ")
        assert appended[-1].startswith(b"a5 OK"), appended
        untagged = appended + _imap(reader, tls, b"a6", b"NOOP")
        assert any(line.endswith(b" EXISTS\r\n") for line in untagged), untagged
        _imap(reader, tls, b"a7", b"LOGOUT")
        reader.close()


def test_dovecot_tls_required_from_another_address(pki: PKI, dovecot_server: DovecotServer) -> None:
    """From 127.0.0.2, Dovecot refuses a plaintext LOGIN; after our
    upgrade, the same LOGIN works."""
    source = ("127.0.0.2", 0)
    with socket.create_connection(
        ("127.0.0.1", dovecot_server.imap), timeout=WAIT, source_address=source
    ) as sock:
        reader = sock.makefile("rb")
        greeting = reader.readline()
        assert b"LOGINDISABLED" in greeting
        sock.sendall(f"a1 LOGIN {USER} {PASSWORD}\r\n".encode())
        refused = _reply(reader, b"a1 ")[-1]
        assert not refused.startswith(b"a1 OK"), refused
        reader.close()
    with starttls_client_socket(
        ("127.0.0.1", dovecot_server.imap),
        "imap",
        pki.client_config(),
        server_hostname="localhost",
        source_address=source,
        timeout=WAIT,
    ) as tls:
        assert tls.capabilities is not None
        assert "LOGINDISABLED" not in tls.capabilities
        reader = tls.makefile("rb")
        _imap(reader, tls, b"a3", f"LOGIN {USER} {PASSWORD}".encode())
        _imap(reader, tls, b"a4", b"LOGOUT")
        reader.close()


def test_dovecot_pop3_socket(pki: PKI, dovecot_server: DovecotServer) -> None:
    with starttls_client_socket(
        ("127.0.0.1", dovecot_server.pop3),
        POP3Client(),
        pki.client_config(),
        source_address=("127.0.0.2", 0),  # where Dovecot requires TLS for USER
        timeout=WAIT,
    ) as tls:
        caps = tls.capabilities
        assert caps is not None
        assert "STLS" not in caps  # CAPA asked again inside TLS
        assert "USER" in caps
        reader = tls.makefile("rb")
        for command in (f"USER {USER}", f"PASS {PASSWORD}"):
            tls.sendall(command.encode() + b"\r\n")
            assert reader.readline().startswith(b"+OK")
        tls.sendall(b"STAT\r\n")
        assert re.match(rb"\+OK \d+ \d+\r\n", reader.readline())
        tls.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")
        reader.close()


def test_dovecot_pop3_asyncio_streams(pki: PKI, dovecot_server: DovecotServer) -> None:
    async def main() -> None:
        reader, writer = await open_starttls_connection(
            "127.0.0.1",
            dovecot_server.pop3,
            protocol="pop3",
            config=pki.client_config(),
            local_addr=("127.0.0.2", 0),
            timeout=WAIT,
        )
        assert writer.capabilities is not None and "STLS" not in writer.capabilities
        async with asyncio.timeout(WAIT):
            for command in (f"USER {USER}", f"PASS {PASSWORD}", "STAT", "QUIT"):
                writer.write(command.encode() + b"\r\n")
                assert (await reader.readline()).startswith(b"+OK")
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())


def _sieve_ok(reader: Any) -> list[bytes]:
    lines = []
    while True:
        line = reader.readline(65536)
        assert line, lines
        lines.append(line)
        if line.split(b" ", 1)[0].rstrip(b"\r\n") in (b"OK", b"NO", b"BYE"):
            assert line.startswith(b"OK"), lines
            return lines


def test_dovecot_managesieve_socket(pki: PKI, dovecot_server: DovecotServer) -> None:
    # In plaintext, Dovecot offers no SASL mechanism to this client...
    with socket.create_connection(
        ("127.0.0.1", dovecot_server.sieve), timeout=WAIT, source_address=("127.0.0.2", 0)
    ) as sock:
        plain_caps = b"".join(_sieve_ok(sock.makefile("rb")))
    assert b'"SASL" ""' in plain_caps
    with starttls_client_socket(
        ("127.0.0.1", dovecot_server.sieve),
        ManageSieveClient(),
        pki.client_config(),
        source_address=("127.0.0.2", 0),
        timeout=WAIT,
    ) as tls:
        # ...inside TLS the capabilities it sent unasked offer PLAIN.
        caps = tls.capabilities
        assert caps is not None
        assert "STARTTLS" not in [c.split(" ")[0] for c in caps]
        assert any(c.startswith("SASL") and "PLAIN" in c for c in caps)
        reader = tls.makefile("rb")
        token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
        tls.sendall(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
        _sieve_ok(reader)
        script = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "x"; }\r\n'
        tls.sendall(b'PUTSCRIPT "securepair" {%d+}\r\n' % len(script) + script + b"\r\n")
        _sieve_ok(reader)
        tls.sendall(b"LISTSCRIPTS\r\n")
        listed = _sieve_ok(reader)
        assert any(line.startswith(b'"securepair"') for line in listed), listed
        tls.sendall(b"LOGOUT\r\n")
        _sieve_ok(reader)
        reader.close()


# ----------------------------------------------------------------------
# PostgreSQL 15

PG_BIN = Path("/usr/lib/postgresql/15/bin")

PG_CONF = """
listen_addresses = '127.0.0.1'
port = @PORT@
unix_socket_directories = '@DIR@/sock'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
fsync = off
"""

PG_HBA = """\
local     all all                trust
hostssl   all all 127.0.0.1/32   trust
hostnossl all all 127.0.0.1/32   reject
"""


@pytest.fixture(scope="session")
def postgres_port(pki: PKI) -> Iterator[int]:
    _require((PG_BIN / "postgres").exists(), f"{PG_BIN}/postgres is missing (postgresql-15)")
    _require_root()
    base = private_dir("sp-pg-")
    data = base / "data"
    data.mkdir(mode=0o700)
    (base / "sock").mkdir()
    for path in (data, base / "sock"):
        shutil.chown(path, "postgres", "postgres")
    port = free_port()

    def as_postgres(*cmd: str) -> None:
        done = subprocess.run(
            cmd, user="postgres", capture_output=True, timeout=60, check=False, cwd=base
        )
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)

    try:
        as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        for source, name in ((pki.cert_file, "server.crt"), (pki.key_file, "server.key")):
            shutil.copy(source, data / name)
            (data / name).chmod(0o600)
            shutil.chown(data / name, "postgres", "postgres")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(_fill(PG_CONF, PORT=port, DIR=base))
        (data / "pg_hba.conf").write_text(PG_HBA)
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start"
        )
        yield port
    finally:
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            user="postgres",
            capture_output=True,
            timeout=60,
            check=False,
            cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)


def _pg_messages(tls: StartTLSSocket, until: bytes) -> list[tuple[bytes, bytes]]:
    """Backend messages up to and including the first of type ``until``."""
    messages = []
    buffer = b""
    while True:
        while len(buffer) >= 5:
            kind = buffer[:1]
            (length,) = struct.unpack("!i", buffer[1:5])
            if len(buffer) < 1 + length:
                break
            body, buffer = buffer[5 : 1 + length], buffer[1 + length :]
            messages.append((kind, body))
            assert kind != b"E", body
            if kind == until:
                assert not buffer
                return messages
        data = tls.recv(65536)
        assert data, messages
        buffer += data


def _pg_query(tls: StartTLSSocket, sql: str) -> list[list[bytes | None]]:
    body = sql.encode() + b"\0"
    tls.sendall(b"Q" + struct.pack("!i", 4 + len(body)) + body)
    rows = []
    for kind, data in _pg_messages(tls, b"Z"):
        if kind == b"D":
            (count,) = struct.unpack("!h", data[:2])
            pos, row = 2, []
            for _ in range(count):
                (size,) = struct.unpack("!i", data[pos : pos + 4])
                pos += 4
                if size < 0:
                    row.append(None)
                else:
                    row.append(data[pos : pos + size])
                    pos += size
            rows.append(row)
    return rows


def test_postgres_socket(pki: PKI, postgres_port: int) -> None:
    with starttls_client_socket(
        ("127.0.0.1", postgres_port),
        PostgreSQLClient(),
        pki.client_config(),
        server_hostname="localhost",
        timeout=WAIT,
    ) as tls:
        assert tls.capabilities is None  # nothing to refresh in PostgreSQL
        # The protocol goes on inside TLS: StartupMessage (3.0), trust auth.
        params = b"user\0postgres\0database\0postgres\0\0"
        tls.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        kinds = [kind for kind, _ in _pg_messages(tls, b"Z")]
        assert kinds[0] == b"R"  # AuthenticationOk
        assert _pg_query(tls, "select 40+2") == [[b"42"]]
        rows = _pg_query(tls, "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()")
        assert rows[0][0] == b"t"
        assert rows[0][1] == tls.version().encode()
        tls.sendall(b"X" + struct.pack("!i", 4))  # Terminate


def test_postgres_refuses_plaintext(postgres_port: int) -> None:
    """``hostnossl ... reject``: a StartupMessage without TLS is refused,
    so the query above ran because of our upgrade."""
    with socket.create_connection(("127.0.0.1", postgres_port), timeout=WAIT) as sock:
        params = b"user\0postgres\0database\0postgres\0\0"
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        reply = sock.recv(4096)
        assert reply[:1] == b"E"
        assert b"no encryption" in reply
