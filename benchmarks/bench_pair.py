"""SecurePair against a bare ssl.SSLObject + MemoryBIO loop, in one process.

The bare loop is written as fast as the stdlib allows: it reads into a
reusable buffer, checks ``MemoryBIO.pending`` before reading so the common
path raises no ``SSLWantReadError``, and hands the application what the
pair's API hands it: one ``bytes`` object per delivery.  For the pair's
``readinto()`` it decrypts straight into the application's buffer instead,
no copy at all.  Its contexts are plain ``ssl.SSLContext`` objects with the
same certificate, trust and versions as the pair's, without the pair's
callbacks.

The limit on bulk throughput is ``openssl speed`` for the negotiated
cipher (``-evp aes-256-gcm -bytes 16384``, one 16 KiB record per call, as
TLS sends them).  A bulk loop here encrypts every byte on the client and
decrypts it on the server, in this one process, so the limit is the two
combined, ``1 / (1/encrypt + 1/decrypt)``; ``openssl speed`` times its own
user CPU, as ``alternate()`` times ours.  The row is a report, not a
target: it says how much of the machine's AES is left for everything else.

    python benchmarks/bench_pair.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import ssl
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from benchmarks._util import Result, alternate, note, plan, print_table, skip, step
from securepair import SecurePair, TLSConfig
from securepair.events import SessionTicket

MiB = 1 << 20

#: The bare loops' receive buffer.  One for the whole run: a connection of
#: its own would cost the bare handshake an allocation the pair does not make.
SCRATCH = memoryview(bytearray(2 * MiB))


class Certs:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.leaf = leaf = self.ca.issue_cert("localhost")
        self.cert = leaf.cert_chain_pems[0].bytes()
        self.key = leaf.private_key_pem.bytes()
        self.ca_pem = self.ca.cert_pem.bytes()
        self.server_config = TLSConfig(cert=self.cert, key=self.key)
        self.client_config = TLSConfig(ca=self.ca_pem)
        # The bare loop's contexts are what an application of the ssl module
        # alone would make: the same certificate, trust, versions and checks
        # (TLS 1.2 and up, the host name verified), and none of our
        # callbacks, whose cost is ours to carry.
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        leaf.configure_cert(self.server_ctx)
        self.client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ca.configure_trust(self.client_ctx)

    def use_group(self, group: str) -> None:
        """New configs (same certificates) that offer only ``group``."""
        backend = self.client_config.backend
        self.server_config = TLSConfig(
            cert=self.cert, key=self.key, backend=backend, ecdh_curve=group
        )
        self.client_config = TLSConfig(ca=self.ca_pem, backend=backend, ecdh_curve=group)


# ----------------------------------------------------------------------
# The bare loop


class Bare:
    """Two SSLObjects back to back, driven by hand."""

    def __init__(self, certs: Certs, session: ssl.SSLSession | None = None) -> None:
        self.ci, self.co, self.si, self.so = (ssl.MemoryBIO() for _ in range(4))
        self.c = certs.client_ctx.wrap_bio(
            self.ci, self.co, server_hostname="localhost", session=session
        )
        self.s = certs.server_ctx.wrap_bio(self.si, self.so, server_side=True)

    def handshake(self) -> None:
        c_done = s_done = False
        while not (c_done and s_done):
            if not c_done:
                try:
                    self.c.do_handshake()
                    c_done = True
                except ssl.SSLWantReadError:
                    pass
            self.si.write(self.co.read())
            if not s_done:
                try:
                    self.s.do_handshake()
                    s_done = True
                except ssl.SSLWantReadError:
                    pass
            self.ci.write(self.so.read())
        # A real client processes what followed the handshake (TLS 1.3
        # session tickets), as the pair does.
        if self.ci.pending:
            with contextlib.suppress(ssl.SSLWantReadError):
                self.c.read(1)

    def deliver_into(self, obj: ssl.SSLObject, bio: ssl.MemoryBIO) -> int:
        """Decrypt what arrived straight into the application's buffer
        (``SCRATCH``), no copy; the byte count.  For ``read()``'s anchor the
        loop makes ``bytes(SCRATCH[:count])`` of it, as the pair does."""
        view = SCRATCH
        read = obj.read
        end = 0
        while bio.pending:
            try:
                end += read(16384, view[end:])
            except ssl.SSLWantReadError:
                break
        return end


def bare_bulk(certs: Certs, size: int, total: int, *, into: bool = False) -> tuple[Bare, object]:
    b = Bare(certs)
    b.handshake()
    chunk = b"x" * size

    def run() -> float:
        moved = 0
        c_write, co_read, si_write = b.c.write, b.co.read, b.si.write
        deliver_into, s, si = b.deliver_into, b.s, b.si
        while moved < total:
            c_write(chunk)
            si_write(co_read())
            moved += len(bytes(SCRATCH[: deliver_into(s, si)]))
        return moved

    def run_into() -> float:
        moved = 0
        c_write, co_read, si_write = b.c.write, b.co.read, b.si.write
        deliver_into, s, si = b.deliver_into, b.s, b.si
        while moved < total:
            c_write(chunk)
            si_write(co_read())
            moved += deliver_into(s, si)
        return moved

    return b, run_into if into else run


def bare_pingpong(certs: Certs, count: int) -> object:
    b = Bare(certs)
    b.handshake()
    msg = b"p" * 64

    def run() -> float:
        for _ in range(count):
            b.c.write(msg)
            b.si.write(b.co.read())
            got = bytes(SCRATCH[: b.deliver_into(b.s, b.si)])
            b.s.write(got)
            b.ci.write(b.so.read())
            bytes(SCRATCH[: b.deliver_into(b.c, b.ci)])
        return count

    return run


def bare_handshakes(certs: Certs, count: int, resume: bool) -> object:
    session = None
    if resume:
        b = Bare(certs)
        b.handshake()
        b.s.write(b"t")
        b.ci.write(b.so.read())
        b.deliver_into(b.c, b.ci)
        session = b.c.session

    def run() -> float:
        for _ in range(count):
            b = Bare(certs, session)
            b.handshake()
            if resume:
                assert b.c.session_reused
        return count

    return run


# ----------------------------------------------------------------------
# The pair


def pair_link(certs: Certs, session: object = None) -> tuple[SecurePair, SecurePair]:
    c = SecurePair(
        certs.client_config, server_side=False, server_hostname="localhost", session=session
    )
    s = SecurePair(certs.server_config, server_side=True)
    # The sides held for the loop, as the README advises: the pair holds
    # them weakly and makes one anew on each access of an unheld side (the
    # handshake rows would be 1-2% lower).
    c_net, s_net = c.encrypted, s.encrypted
    while not (c.handshake_complete and s.handshake_complete):
        s_net.write(c_net.read())
        data = s_net.read()
        if data:
            c_net.write(data)
    return c, s


def pair_bulk(certs: Certs, size: int, total: int, *, into: bool = False) -> object:
    c, s = pair_link(certs)
    chunk = b"x" * size
    app_buffer = bytearray(2 * MiB)

    def run() -> float:
        moved = 0
        c_write, c_out = c.cleartext.write, c.encrypted.read
        s_in, s_read = s.encrypted.write, s.cleartext.read
        while moved < total:
            c_write(chunk)
            s_in(c_out())
            moved += len(s_read())
        s._events.clear()
        return moved

    def run_into() -> float:
        moved = 0
        c_write, c_out = c.cleartext.write, c.encrypted.read
        s_in, s_readinto = s.encrypted.write, s.cleartext.readinto
        while moved < total:
            c_write(chunk)
            s_in(c_out())
            moved += s_readinto(app_buffer)
        s._events.clear()
        return moved

    return run_into if into else run


def pair_pingpong(certs: Certs, count: int) -> object:
    c, s = pair_link(certs)
    msg = b"p" * 64

    def run() -> float:
        c_write, c_out, c_in, c_read = (
            c.cleartext.write,
            c.encrypted.read,
            c.encrypted.write,
            c.cleartext.read,
        )
        s_write, s_out, s_in, s_read = (
            s.cleartext.write,
            s.encrypted.read,
            s.encrypted.write,
            s.cleartext.read,
        )
        for _ in range(count):
            c_write(msg)
            s_in(c_out())
            s_write(s_read())
            c_in(s_out())
            c_read()
        c._events.clear()
        s._events.clear()
        return count

    return run


def pair_handshakes(certs: Certs, count: int, resume: bool) -> object:
    session = None
    if resume:
        c, s = pair_link(certs)
        s.cleartext.write(b"t")
        c.encrypted.write(s.encrypted.read())
        session = next(e.session for e in c.events() if isinstance(e, SessionTicket))

    def run() -> float:
        for _ in range(count):
            c, _s = pair_link(certs, session)
            if resume:
                assert c.session_reused
        return count

    return run


# ----------------------------------------------------------------------
# openssl speed: the limit


def evp_name(cipher: str) -> str | None:
    """``openssl speed -evp`` name of a TLS cipher suite (OpenSSL spelling)."""
    name = cipher.upper().replace("_", "-")
    for pattern, evp in (
        ("AES-256-GCM|AES256-GCM", "aes-256-gcm"),
        ("AES-128-GCM|AES128-GCM", "aes-128-gcm"),
        ("CHACHA20-POLY1305", "chacha20-poly1305"),
    ):
        if re.search(pattern, name):
            return evp
    return None


def openssl_speed(openssl: str, evp: str, *, decrypt: bool, seconds: int) -> float:
    """Bytes per second of one ``openssl speed`` run on 16 KiB blocks."""
    command = [openssl, "speed", "-mr", "-evp", evp, "-bytes", "16384", "-seconds", str(seconds)]
    if decrypt:
        command.insert(2, "-decrypt")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    # -mr prints "+F:<n>:<name>:<bytes per second>" for the one size asked for.
    found = re.findall(r"^\+F:\d+:[^:]+:([0-9.]+)\s*$", done.stdout, re.MULTILINE)
    if not found:
        raise RuntimeError(f"unexpected output from {' '.join(command)}: {done.stdout[-200:]!r}")
    return float(found[-1])


def speed_limit(certs: Certs, ours: float, runs: int) -> Result | None:
    """Our bulk rate as a share of what ``openssl speed`` says the cipher allows."""
    what = "openssl speed (bulk limit)"
    openssl = shutil.which("openssl")
    if openssl is None:
        skip(what, "openssl is not installed")
        return None
    c, _s = pair_link(certs)
    evp = evp_name(c.cipher)
    if evp is None:
        skip(what, f"no openssl speed name for the negotiated cipher {c.cipher}")
        return None
    tick = step(f"openssl speed -evp {evp}", 2 * runs)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(runs):
        for decrypt in (False, True):
            rates[decrypt].append(openssl_speed(openssl, evp, decrypt=decrypt, seconds=1))
            tick()
    encrypt, decrypt = (statistics.median(rates[d]) for d in (False, True))
    limit = 1 / (1 / encrypt + 1 / decrypt)
    version = " ".join(
        subprocess.run(
            [openssl, "version"], capture_output=True, text=True, check=False
        ).stdout.split()[:2]
    )
    library = " ".join(ssl.OPENSSL_VERSION.split()[:2])
    if library != version:
        # A different libcrypto than the one our bytes go through: say so.
        version = f"{version}, while the ssl module has {library}"
    note(
        f"openssl speed -evp {evp} -bytes 16384 ({version}): encrypt {encrypt / 1e6:.0f} MB/s,"
        f" decrypt {decrypt / 1e6:.0f} MB/s; the pair negotiated {c.version} {c.cipher}"
    )
    return Result(
        "bulk 16 KiB: share of openssl speed",
        "MB/s",
        ours / 1e6,
        limit / 1e6,
        f"openssl speed {evp} enc+dec",
    )


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    rounds = 3 if args.quick else 7
    certs = Certs()
    plan(10)
    results: list[Result] = []
    bulk_16k = 0.0
    # read() hands out a new bytes object, as the bare loop does; readinto()
    # fills the application's buffer, against a bare loop that decrypts
    # straight into it.  The pair decrypts as records arrive, into its own
    # buffer, so its readinto() is one copy more than that.
    for into in (False, True):
        for size in (16 * 1024, 64 * 1024, MiB):
            total = int(64 * MiB * scale)
            name = f"bulk {size // 1024} KiB writes" + (", readinto" if into else "")
            _, bare = bare_bulk(certs, size, total, into=into)
            rates = alternate(
                {"bare": bare, "pair": pair_bulk(certs, size, total, into=into)},  # type: ignore[dict-item]
                rounds,
                label=name,
            )
            if size == 16 * 1024 and not into:
                bulk_16k = rates["pair"]
            results.append(
                Result(
                    name,
                    "MB/s",
                    rates["pair"] / 1e6,
                    rates["bare"] / 1e6,
                    "bare SSLObject" + (", no copy" if into else ""),
                    0.95,
                )
            )
    count = int(20000 * scale)
    rates = alternate(
        {"bare": bare_pingpong(certs, count), "pair": pair_pingpong(certs, count)},  # type: ignore[dict-item]
        rounds,
        label="ping-pong 64 B",
    )
    results.append(
        Result("ping-pong 64 B", "rt/s", rates["pair"], rates["bare"], "bare SSLObject", 0.6)
    )
    count = max(20, int(300 * scale))
    for resume in (False, True):
        name = "resumed handshakes" if resume else "full handshakes"
        rates = alternate(
            {
                "bare": bare_handshakes(certs, count, resume),
                "pair": pair_handshakes(certs, count, resume),
            },  # type: ignore[dict-item]
            rounds,
            label=name,
        )
        results.append(Result(name, "/s", rates["pair"], rates["bare"], "bare SSLObject", 0.95))
    limit = speed_limit(certs, bulk_16k, 1 if args.quick else 3)
    if limit is not None:
        results.append(limit)
    print_table(results)
    return results


if __name__ == "__main__":
    main()
