"""The pyOpenSSL backend against a bare pyOpenSSL memory-BIO loop, and its
resumed handshakes against the stdlib backend's, in one process.

The two backends are two OpenSSL builds (pyOpenSSL's wheel bundles its own),
and with their defaults they do not do the same work: OpenSSL 3.5 and later
offer the hybrid post-quantum group X25519MLKEM768 first, where 3.0 offers
x25519.  So the comparison runs twice: with each backend's defaults (what an
application gets, and the row with the target), and with both held to
x25519 (the same key exchange, so what is left is the session handling).

    python benchmarks/bench_pyopenssl.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from benchmarks._util import Result, alternate, note, plan, print_table
from benchmarks.bench_pair import (
    SCRATCH,
    Certs,
    MiB,
    pair_bulk,
    pair_handshakes,
    pair_link,
    pair_pingpong,
)
from securepair import TLSConfig


class PyCerts(Certs):
    """The same certificates, with pyOpenSSL configs and contexts."""

    def __init__(self) -> None:
        super().__init__()
        self.server_config = TLSConfig(cert=self.cert, key=self.key, backend="pyopenssl")
        self.client_config = TLSConfig(ca=self.ca_pem, backend="pyopenssl")
        # As for the stdlib: the bare loop has plain contexts, with the same
        # certificate, trust and versions, and without our callbacks.
        self.server_py = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.server_py.set_min_proto_version(SSL.TLS1_2_VERSION)
        self.leaf.configure_cert(self.server_py)
        self.client_py = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self.client_py.set_min_proto_version(SSL.TLS1_2_VERSION)
        self.ca.configure_trust(self.client_py)
        self.client_py.set_verify(SSL.VERIFY_PEER)


#: The first group of OpenSSL's built-in default list, which two peers of
#: the same build negotiate (unless openssl.cnf changes the list).  The ssl
#: module cannot name the group a connection used.
_STDLIB_DEFAULT_GROUP = (
    "X25519MLKEM768 (probably)" if ssl.OPENSSL_VERSION_INFO >= (3, 5) else "x25519 (probably)"
)


def group_name(certs: PyCerts) -> str:
    """The key exchange group a pyOpenSSL pair of these configs negotiates."""
    client, _server = pair_link(certs)
    conn = client._conn._conn  # type: ignore[attr-defined]
    return _ffi.string(_lib.SSL_get0_group_name(conn._ssl)).decode()  # type: ignore[no-any-return]


class BarePy:
    """Two pyOpenSSL connections back to back, driven by hand."""

    def __init__(self, certs: PyCerts, session: Any = None) -> None:
        self.c = SSL.Connection(certs.client_py, None)
        self.c.set_connect_state()
        self.c.set_tlsext_host_name(b"localhost")
        # The host name checked, as the pair (and the stdlib's bare loop) do.
        _lib.X509_VERIFY_PARAM_set1_host(_lib.SSL_get0_param(self.c._ssl), b"localhost", 0)
        if session is not None:
            self.c.set_session(session)
        self.s = SSL.Connection(certs.server_py, None)
        self.s.set_accept_state()

    @staticmethod
    def move(src: SSL.Connection, dst: SSL.Connection) -> None:
        with contextlib.suppress(SSL.WantReadError):
            dst.bio_write(src.bio_read(4 * MiB))

    def handshake(self) -> None:
        done_c = done_s = False
        while not (done_c and done_s):
            if not done_c:
                try:
                    self.c.do_handshake()
                    done_c = True
                except SSL.WantReadError:
                    pass
            self.move(self.c, self.s)
            if not done_s:
                try:
                    self.s.do_handshake()
                    done_s = True
                except SSL.WantReadError:
                    pass
            self.move(self.s, self.c)
        with contextlib.suppress(SSL.WantReadError):
            self.c.recv(1)

    def deliver(self, conn: SSL.Connection) -> bytes:
        view = SCRATCH
        end = 0
        while True:
            try:
                end += conn.recv_into(view[end:], 16384)
            except SSL.WantReadError:
                break
        return bytes(view[:end])


def bare_bulk(certs: PyCerts, size: int, total: int) -> Any:
    b = BarePy(certs)
    b.handshake()
    chunk = b"x" * size

    def run() -> float:
        moved = 0
        while moved < total:
            b.c.sendall(chunk)
            b.move(b.c, b.s)
            moved += len(b.deliver(b.s))
        return moved

    return run


def bare_pingpong(certs: PyCerts, count: int) -> Any:
    b = BarePy(certs)
    b.handshake()
    msg = b"p" * 64

    def run() -> float:
        for _ in range(count):
            b.c.send(msg)
            b.move(b.c, b.s)
            b.s.send(b.deliver(b.s))
            b.move(b.s, b.c)
            b.deliver(b.c)
        return count

    return run


def bare_handshakes(certs: PyCerts, count: int, resume: bool) -> Any:
    session = first = None
    if resume:
        first = BarePy(certs)
        first.handshake()
        session = first.c.get_session()
        # Freed without a close_notify, the first connection would mark its
        # session not resumable (OpenSSL's ssl_clear_bad_session), and every
        # "resumed" handshake below would silently be a full one.

    def run() -> float:
        keep = first  # noqa: F841 -- see above
        for _ in range(count):
            b = BarePy(certs, session)
            b.handshake()
            if resume:
                assert _lib.SSL_session_reused(b.c._ssl)
        return count

    return run


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    rounds = 3 if args.quick else 7
    certs = PyCerts()
    plan(8)
    results: list[Result] = []
    for size in (16 * 1024, 64 * 1024, MiB):
        total = int(64 * MiB * scale)
        rates = alternate(
            {"bare": bare_bulk(certs, size, total), "pair": pair_bulk(certs, size, total)},
            rounds,
            label=f"pyopenssl bulk {size // 1024} KiB",
        )
        results.append(
            Result(
                f"pyopenssl bulk {size // 1024} KiB",
                "MB/s",
                rates["pair"] / 1e6,
                rates["bare"] / 1e6,
                "bare pyOpenSSL",
                0.9,
            )
        )
    count = int(20000 * scale)
    rates = alternate(
        {"bare": bare_pingpong(certs, count), "pair": pair_pingpong(certs, count)},
        rounds,
        label="pyopenssl ping-pong 64 B",
    )
    results.append(
        Result(
            "pyopenssl ping-pong 64 B",
            "rt/s",
            rates["pair"],
            rates["bare"],
            "bare pyOpenSSL",
            0.9,
        )
    )
    count = max(20, int(300 * scale))
    for resume in (False, True):
        name = "pyopenssl resumed handshakes" if resume else "pyopenssl full handshakes"
        rates = alternate(
            {
                "bare": bare_handshakes(certs, count, resume),
                "pair": pair_handshakes(certs, count, resume),
            },
            rounds,
            label=name,
        )
        results.append(Result(name, "/s", rates["pair"], rates["bare"], "bare pyOpenSSL", 0.9))
    stdlib_certs = Certs()
    note(
        "key exchange by default: pyOpenSSL backend "
        f"({SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}) {group_name(certs)}, "
        f"stdlib backend ({ssl.OPENSSL_VERSION}) {_STDLIB_DEFAULT_GROUP}"
    )
    for label, group in (
        ("resumed: pyopenssl vs stdlib pair", None),
        ("resumed, both x25519: pyopenssl vs stdlib", "X25519"),
    ):
        if group is not None:
            certs.use_group(group)
            stdlib_certs.use_group(group)
        rates = alternate(
            {
                "stdlib": pair_handshakes(stdlib_certs, count, True),
                "pyopenssl": pair_handshakes(certs, count, True),
            },
            rounds,
            label=label,
        )
        results.append(
            Result(
                label,
                "/s",
                rates["pyopenssl"],
                rates["stdlib"],
                "stdlib backend",
                2.0 if group is None else None,
            )
        )
    print_table(results)
    return results


if __name__ == "__main__":
    main()
