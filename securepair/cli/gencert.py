"""``securepair gencert``: certificates for a TLS server in one command.

The classic recipe is two commands and forgets the subjectAltName::

    openssl genrsa 2048 > server.pem
    openssl req -new -x509 -nodes -sha256 -days 3650 -key server.pem > server.cert

This makes the same pair (``server.cert`` and ``server.pem``, RSA-2048, ten
years) with a subjectAltName covering ``localhost``, this machine's name,
``127.0.0.1`` and ``::1``.  With ``--ca`` it makes a small CA instead, and
signs the server certificate and a client certificate with it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from .. import certgen

HELP = "make a server certificate and key (or a small CA) in one command"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``gencert``."""
    parser.add_argument(
        "--dir",
        default=".",
        help="folder to write into (default: the current folder)",
    )
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="add a host name or IP address to the subjectAltName (repeatable)",
    )
    parser.add_argument(
        "--no-default-hosts",
        action="store_true",
        help="leave out localhost, this machine's name, 127.0.0.1 and ::1",
    )
    parser.add_argument(
        "--key-type",
        choices=["rsa", "ecdsa"],
        default="rsa",
        help="rsa (2048 bits, the default, as the classic recipe) or ecdsa (P-256)",
    )
    parser.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    parser.add_argument(
        "--ca",
        action="store_true",
        help="make a CA (ca.cert, ca.pem) and sign server.cert and client.cert with it",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def _hosts(args: argparse.Namespace) -> list[str]:
    hosts: list[str] = []
    if not args.no_default_hosts:
        hosts += ["localhost", socket.gethostname(), "127.0.0.1", "::1"]
    for host in args.host:
        if host not in hosts:
            hosts.append(host)
    # A machine named "localhost" would otherwise appear twice.
    return list(dict.fromkeys(h for h in hosts if h))


def _write(path: Path, data: bytes, *, private: bool, force: bool) -> None:
    if path.exists() and not force:
        raise FileExistsError(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    mode = 0o600 if private else 0o644
    fd = os.open(path, flags, mode)
    try:
        # An existing file keeps its mode through O_TRUNC; set it explicitly.
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    """Write the files; returns the exit status."""
    out = Path(args.dir)
    if not out.is_dir():
        print(f"securepair gencert: {out} is not a folder", file=sys.stderr)
        return 2
    if args.days < 1:
        print("securepair gencert: --days must be at least 1", file=sys.stderr)
        return 2
    hosts = _hosts(args)
    if not hosts:
        print("securepair gencert: no host names (give --host)", file=sys.stderr)
        return 2
    files: list[tuple[str, bytes, bool]] = []
    if args.ca:
        ca = certgen.CertificateAuthority(
            "securepair CA", key_type=args.key_type, days=max(args.days, 1)
        )
        server = ca.issue(hosts, key_type=args.key_type, days=args.days)
        client = ca.issue(
            [], common_name="client", client=True, key_type=args.key_type, days=args.days
        )
        files += [
            ("ca.cert", ca.cert_pem, False),
            ("ca.pem", ca.key_pem, True),
            ("server.cert", server.cert_pem, False),
            ("server.pem", server.key_pem, True),
            ("client.cert", client.cert_pem, False),
            ("client.pem", client.key_pem, True),
        ]
    else:
        own = certgen.self_signed(hosts, key_type=args.key_type, days=args.days)
        files += [("server.cert", own.cert_pem, False), ("server.pem", own.key_pem, True)]
    existing = [name for name, _, _ in files if (out / name).exists()]
    if existing and not args.force:
        print(
            f"securepair gencert: {', '.join(existing)} already exist in {out}; "
            "nothing was written (use --force to overwrite)",
            file=sys.stderr,
        )
        return 1
    for name, data, private in files:
        _write(out / name, data, private=private, force=args.force)
    kind = "RSA-2048" if args.key_type == "rsa" else "ECDSA P-256"
    for name, _, private in files:
        note = " (private key, mode 0600)" if private else ""
        print(f"wrote {out / name}{note}")
    print(f"{kind}, valid {args.days} days, subjectAltName: {', '.join(hosts)}")
    if not args.ca:
        print("clients pin this server by trusting server.cert itself (--ca server.cert)")
    return 0
