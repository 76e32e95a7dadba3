"""``securepair connect``: connect to a TLS server, show what was negotiated
and whether the server's certificate verifies, then relay stdin to the
server and the server's bytes to stdout; like ``openssl s_client``, but
readable.

Examples:

  securepair connect example.com:443
  securepair connect 127.0.0.1:4433 --ca server.cert    # pin a self-signed server
  securepair connect [::1]:8443 --servername api.example.test --alpn h2,http/1.1
  securepair connect mail.example.com:587 --starttls smtp --crlf
  securepair connect 10.0.0.5:443 --cert client.cert --key client.pem --ca ca.cert
  securepair connect example.com:443 --json | jq .peer_certificate.valid_to
  printf 'GET / HTTP/1.0\\r\\nHost: example.com\\r\\n\\r\\n' | securepair connect -q example.com:443

Verification: the server's certificate is checked against --ca (default:
the system's CAs) and against the server name (--servername, default HOST;
an IP address is checked as an IP address and is not sent as SNI).  As with
s_client, a certificate that does not verify does not end the connection:
the handshake completes and the result is reported as "authorized: false"
with Node's code and what it means (DEPTH_ZERO_SELF_SIGNED_CERT,
UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID...).  Going on
after a failed verification needs the pyOpenSSL backend (the default,
--backend auto, picks it); with --backend stdlib the handshake stops at the
failure and the code is reported.

Output: the details go to stderr, so stdout carries the server's bytes and
nothing else (binary-safe).  --json prints the details as one JSON object on
stdout instead and exits without relaying; --quiet prints no details (a
certificate that does not verify is still reported, in one line).

End of input: when stdin ends, connect sends close_notify at once if TLS 1.3
was negotiated (a half-close: the server can still answer), then keeps
printing what the server sends until it closes.  TLS 1.2 has no half-close
(a server answers close_notify by closing at once, dropping its answer), so
there connect sends nothing and waits for the server to close.  Either way,
a server that sends nothing for --timeout seconds after the end of input is
closed on.  A server that closes without close_notify (the data may have
been cut off) is reported as an error.

Exit status:
  0  connected, and the certificate verified (or --insecure)
  1  no connection: host not found, refused, timed out, TLS or STARTTLS
     failed, not a TLS server; or the connection failed while relaying
  2  a usage mistake: bad HOST:PORT, a missing or unreadable file
  3  the server's certificate did not verify: reported after relaying (at
     once with --json, and with --backend stdlib, which stops there)
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from ..certinfo import PeerCertificate
from ..config import BACKENDS, TLSConfig
from ..errors import (
    CertificateVerificationError,
    ConfigError,
    NotTLSError,
    RaggedEOFError,
    SecurePairError,
    TLSAlertReceivedError,
)
from ..events import SessionTicket
from ..socket import TLSSocket, wrap_socket
from ..starttls import PROTOCOLS
from ..starttls.errors import StartTLSError, StartTLSRefusedError
from ..verify_codes import VERIFICATION_DISABLED
from . import CommandError

HELP = "connect to a TLS server, show the certificate and the verification result, relay stdin"

#: Exit statuses (2, a usage mistake, is the command line's own).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAUTHORIZED = 3

#: Bytes read from stdin, and asked of the connection, at once.
CHUNK = 64 * 1024

#: Bytes of stdin held while the server is not taking them; stdin is not
#: read beyond this, so a server that stops reading stops the input too.
MAX_OUTBOX = 256 * 1024

#: Seconds to wait, after a TLS 1.3 handshake, for the server's first
#: records (its session tickets).  A TLS 1.3 client finishes the handshake
#: before the server has checked the client's Finished and certificate, so
#: a server that rejects the client certificate says so only afterwards,
#: with an alert; waiting for the tickets lets that alert be the result
#: instead of a report that looks like success.  Servers send their
#: tickets at once; one that sends none costs this much.
SETTLE_WAIT = 0.5

#: TLSConfig option -> the command-line option that sets it, so that a
#: ConfigError names what the user typed.
_OPTION_NAMES = {
    "ca": "--ca",
    "cert": "--cert",
    "key": "--key",
    "passphrase": "--key",
    "alpn_protocols": "--alpn",
    "min_version": "--min-version",
    "max_version": "--max-version",
    "insecure_no_verify": "--insecure",
    "backend": "--backend",
    "server_hostname": "--servername",
    "servername": "--servername",
}

#: What Node's verification codes mean, in words.  Codes not listed here
#: are rare; they are shown with OpenSSL's name only.
_EXPLANATIONS = {
    "DEPTH_ZERO_SELF_SIGNED_CERT": (
        "the server's certificate is self-signed and not trusted; to pin it, "
        "pass that certificate with --ca"
    ),
    "SELF_SIGNED_CERT_IN_CHAIN": "the chain ends in a self-signed CA that is not trusted",
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE": (
        "the certificate's issuer is not a trusted CA, and the server sent no chain leading to one"
    ),
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY": (
        "the chain does not lead to a trusted CA, or the server left out an "
        "intermediate certificate"
    ),
    "UNABLE_TO_GET_ISSUER_CERT": "the issuer of a certificate in the chain was not found",
    "CERT_HAS_EXPIRED": "the certificate has expired",
    "CERT_NOT_YET_VALID": "the certificate is not valid yet, or this machine's clock is wrong",
    "CERT_SIGNATURE_FAILURE": "a signature in the chain does not verify",
    "CERT_REVOKED": "the certificate has been revoked",
    "INVALID_CA": "a certificate in the chain is used as a CA but is not one",
    "PATH_LENGTH_EXCEEDED": "the chain is longer than a CA in it allows",
    "CERT_CHAIN_TOO_LONG": "the chain is too long",
    "INVALID_PURPOSE": "the certificate's extended key usage does not allow TLS servers",
    "CERT_UNTRUSTED": "the root CA is not trusted for this purpose",
    "CERT_REJECTED": "the root CA is marked to reject this purpose",
    "NO_PEER_CERTIFICATE": "the server sent no certificate",
    VERIFICATION_DISABLED: "verification was turned off with --insecure",
}

#: Alerts a server sends, with the likely cause in words.
_ALERT_HINTS = {
    "certificate_required": "the server requires a client certificate: give --cert and --key",
    "protocol_version": (
        "no TLS version in common; connect offers TLS 1.2 and 1.3 unless "
        "--min-version or --max-version say otherwise"
    ),
    "handshake_failure": (
        "no cipher suite, group or signature algorithm in common, or the server "
        "requires a client certificate: see --cert and --key"
    ),
    "no_application_protocol": "the server supports none of the --alpn protocols",
    "unrecognized_name": "the server does not know the name sent as SNI; see --servername",
    "unknown_ca": "the server does not trust the issuer of the client certificate",
    "bad_certificate": "the server did not accept the client certificate",
    "certificate_unknown": "the server did not accept the client certificate",
}


class _Failed(Exception):
    """The connection failed; the message is the one line to print."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``connect``."""
    doc = (__doc__ or "").strip()
    parser.epilog = doc.split("\n\n", 1)[1] if "\n\n" in doc else None
    parser.add_argument(
        "target",
        metavar="HOST:PORT",
        help="the server: name:port, IPv4:port, or [IPv6]:port",
    )
    parser.add_argument(
        "--starttls",
        choices=sorted(PROTOCOLS),
        metavar="PROTO",
        help="speak PROTO's plaintext phase first and upgrade with STARTTLS: "
        + ", ".join(sorted(PROTOCOLS)),
    )
    parser.add_argument(
        "--servername",
        metavar="NAME",
        help="the name sent as SNI and checked against the certificate "
        "(default: HOST; an IP address is checked, not sent)",
    )
    parser.add_argument(
        "--alpn",
        action="append",
        default=[],
        metavar="PROTOCOLS",
        help="offer these ALPN protocols, most preferred first (repeatable, or a comma list)",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="trust these CA certificates (PEM) instead of the system's; "
        "a self-signed server is pinned with its own certificate",
    )
    parser.add_argument("--cert", metavar="FILE", help="client certificate chain (PEM)")
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="private key of --cert (PEM, unencrypted; default: in --cert)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="UNSAFE: do not verify the server at all (anyone in the path can "
        "read and change the traffic)",
    )
    parser.add_argument(
        "--backend",
        choices=["auto", *BACKENDS],
        default="auto",
        help="TLS backend (default auto: pyOpenSSL, which can report a failed "
        "verification and go on; stdlib stops at it)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="limit for connecting and completing the handshake, and for the "
        "server's silence after the end of input (default 10)",
    )
    parser.add_argument(
        "--min-version",
        choices=["TLSv1.2", "TLSv1.3"],
        default="TLSv1.2",
        help="lowest TLS version to accept (default TLSv1.2)",
    )
    parser.add_argument(
        "--max-version",
        choices=["TLSv1.2", "TLSv1.3"],
        default=None,
        help="highest TLS version to offer (default: the newest)",
    )
    parser.add_argument(
        "--crlf",
        action="store_true",
        help="send the lines of stdin with CRLF endings (as s_client -crlf)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print no details: only relay (a failed verification is still one line)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="print the details as one JSON object on stdout and exit without relaying",
    )


# ----------------------------------------------------------------------
# The command line's values


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` for IPv6 addresses) -> (host, port)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise CommandError(f"expected [IPv6]:PORT, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CommandError(f"{host!r} in {text!r} is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise CommandError(f"expected HOST:PORT, got {text!r} (the port is required)")
        if ":" in host:
            raise CommandError(f"put an IPv6 address in brackets: [{host}]:{port_text}")
    if not host:
        raise CommandError(f"expected HOST:PORT, got {text!r} (the host is missing)")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise CommandError(f"the port must be a number from 1 to 65535, not {port_text!r}")
    return host, int(port_text)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: One label of a host name (underscores are seen in the wild).
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _check_servername(name: str, given: bool) -> None:
    """Refuse a name OpenSSL cannot check: given one, its host name check
    is silently not set up (see the pyOpenSSL backend)."""
    if _is_ip(name):
        return
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        if given:
            raise CommandError(f"--servername: {name!r} is not a valid host name")
        raise CommandError(
            f"{name!r} is not a valid host name; give the name to verify with --servername"
        )


def _alpn(values: list[str]) -> list[str] | None:
    names = [name.strip() for value in values for name in value.split(",")]
    return [name for name in names if name] or None


def _config(args: argparse.Namespace) -> TLSConfig:
    if args.insecure and args.ca is not None:
        raise CommandError("--insecure contradicts --ca: pinning a certificate needs verification")
    try:
        return TLSConfig(
            backend=args.backend,
            ca=args.ca,
            cert=args.cert,
            key=args.key,
            alpn_protocols=_alpn(args.alpn),
            min_version=args.min_version,
            max_version=args.max_version,
            insecure_no_verify=args.insecure,
            # Node's semantics: verify, report, go on.  Only pyOpenSSL can;
            # the stdlib stops at the failure, which is then reported.
            reject_unauthorized=args.insecure or args.backend == "stdlib",
        )
    except ConfigError as exc:
        raise _usage(exc) from None


def _usage(exc: ConfigError) -> CommandError:
    option = _OPTION_NAMES.get(exc.option, exc.option)
    if exc.option == "passphrase":
        return CommandError(f"{option}: {exc.problem} (connect reads unencrypted keys only)")
    return CommandError(f"{option}: {exc.problem}")


# ----------------------------------------------------------------------
# Connecting


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open(host: str, port: int, deadline: float, timeout: float) -> socket.socket:
    """A TCP connection, trying each address of ``host`` in turn."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Failed(f"cannot resolve host {host}: {exc.strerror}") from None
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    if last is None or isinstance(last, TimeoutError):
        reason = f"timed out after {timeout:g} s"
    else:
        reason = last.strerror or str(last)
    raise _Failed(f"cannot connect to {_where(host, port)}: {reason}")


def _server_says(message: str) -> str:
    # The engine speaks of "the peer"; here the peer is always the server.
    return re.sub(r"^peer\b", "the server", message)


def _tls_failure(exc: SecurePairError, where: str, *, during: str) -> _Failed:
    if isinstance(exc, NotTLSError):
        hint = ""
        if exc.kind in PROTOCOLS:
            hint = f" (try --starttls {exc.kind})"
        return _Failed(f"{where} does not speak TLS: {_server_says(str(exc))}{hint}")
    if isinstance(exc, StartTLSRefusedError):
        # The negotiator's advice about allow_plaintext is for API users.
        text = re.sub(r" \(allow_plaintext=True[^)]*\)", "", str(exc))
        return _Failed(f"STARTTLS refused by the server at {where}: {text}")
    if isinstance(exc, StartTLSError):
        return _Failed(f"STARTTLS ({exc.protocol}) with {where} failed: {exc}")
    if isinstance(exc, RaggedEOFError) and during == "handshake":
        return _Failed(
            f"TLS handshake with {where} failed: the server closed the connection "
            "without a TLS answer"
        )
    message = f"TLS {during} with {where} failed: {_server_says(str(exc))}"
    if isinstance(exc, TLSAlertReceivedError) and exc.alert in _ALERT_HINTS:
        message += f" ({_ALERT_HINTS[exc.alert]})"
    return _Failed(message)


def _handshake(
    args: argparse.Namespace, config: TLSConfig, servername: str, deadline: float
) -> TLSSocket:
    where = _where(args.host, args.port)
    sock = _open(args.host, args.port, deadline, args.timeout)
    try:
        remaining = max(deadline - time.monotonic(), 0.001)
        if args.starttls:
            from ..starttls.socket import starttls_client_socket

            # The helper closes the socket on every error.
            return starttls_client_socket(
                sock, args.starttls, config, server_hostname=servername, timeout=remaining
            )
        sock.settimeout(remaining)
        try:
            return wrap_socket(sock, config, server_hostname=servername)
        except BaseException:
            sock.close()
            raise
    except CertificateVerificationError:
        raise
    except ConfigError as exc:
        raise _usage(exc) from None
    except SecurePairError as exc:
        raise _tls_failure(exc, where, during="handshake") from None
    except TimeoutError:
        step = f"STARTTLS ({args.starttls}) and TLS handshake" if args.starttls else "TLS handshake"
        raise _Failed(
            f"{step} with {where} timed out after {args.timeout:g} s (the server "
            "accepted the connection but did not finish)"
        ) from None
    except OSError as exc:
        raise _Failed(
            f"connection to {where} failed during the handshake: {exc.strerror or exc}"
        ) from None


def _settle(tls: TLSSocket, wait: float) -> bytes:
    """TLS 1.3: wait up to ``wait`` seconds for the server's session
    tickets (or its alert); returns cleartext that came first."""
    if tls.version() != "TLSv1.3":
        return b""
    tls.settimeout(0.0)
    deadline = time.monotonic() + wait
    while not any(isinstance(event, SessionTicket) for event in tls.events()):
        if not tls.pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _readable(tls, remaining):
                return b""
        try:
            return tls.recv(CHUNK)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
    return b""


def _readable(tls: TLSSocket, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(tls.fileno(), selectors.EVENT_READ)
        return bool(selector.select(timeout))


# ----------------------------------------------------------------------
# Details


def explain(code: str | None, *, servername: str | None = None, san: str | None = None) -> str:
    """What a Node verification code means, in words.  ``san`` is the
    certificate's subjectAltName (``""``: it has none; ``None``: unknown)."""
    if code is None:
        return ""
    if code == "ERR_TLS_CERT_ALTNAME_INVALID":
        if san is None:
            return f"the certificate is not for {servername}"
        if not san:
            return f"the certificate is not for {servername}: it has no subjectAltName"
        return f"the certificate is for {san}, not for {servername}"
    return _EXPLANATIONS.get(code, f"OpenSSL's verification failed with {code}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items() if k != "issuerCertificate"}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _chain(leaf: PeerCertificate | None) -> list[PeerCertificate]:
    chain: list[PeerCertificate] = []
    cert = leaf
    while cert is not None and all(cert is not seen for seen in chain):
        chain.append(cert)
        cert = cert.get("issuerCertificate")
    return chain


def details(tls: TLSSocket, args: argparse.Namespace, servername: str) -> dict[str, Any]:
    """Everything the handshake settled, as a JSON-safe dict."""
    try:
        address = tls.getpeername()[0]
    except OSError:  # the server has already reset the connection
        address = None
    name, _, bits = tls.cipher()
    chain = _chain(tls.peer_certificate(detailed=True))
    leaf = chain[0] if chain else None
    code = tls.authorization_error
    starttls = None
    if args.starttls:
        capabilities = getattr(tls, "capabilities", None)
        starttls = {
            "protocol": args.starttls,
            "capabilities": None if capabilities is None else list(capabilities),
        }
    return {
        "host": args.host,
        "port": args.port,
        "address": address,
        "servername": servername,
        "sni": None if _is_ip(servername) else servername,
        "starttls": starttls,
        "backend": tls.pair.backend,
        "version": tls.version(),
        "cipher": {"name": name, "bits": bits},
        "alpn": tls.alpn_protocol,
        "alpn_offered": _alpn(args.alpn),
        "authorized": tls.authorized,
        "authorization_error": code,
        "authorization_reason": explain(
            code, servername=servername, san=leaf.get("subjectaltname", "") if leaf else None
        )
        or None,
        "session_reused": tls.session_reused,
        "peer_certificate": _json_safe(leaf),
        "chain": _json_safe(chain),
    }


def _dn(name: dict[str, Any]) -> str:
    parts = []
    for key, value in name.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append(f"{key}={item}")
    return ", ".join(parts) or "(empty)"


def _key(cert: dict[str, Any]) -> str:
    if "modulus" in cert:
        return f"RSA {cert.get('bits')} bits"
    if "asn1Curve" in cert:
        return f"EC {cert.get('nistCurve') or cert['asn1Curve']}"
    return f"{cert.get('bits')} bits"


def _lines(info: dict[str, Any]) -> Iterator[str]:
    address = f" (address {info['address']})" if info["address"] else ""
    yield f"connected to {_where(info['host'], info['port'])}{address}"
    if info["starttls"]:
        caps = info["starttls"]["capabilities"]
        listed = ", ".join(caps) if caps else "none"
        yield f"starttls: {info['starttls']['protocol']} (capabilities inside TLS: {listed})"
    yield f"protocol: {info['version']}"
    yield f"cipher: {info['cipher']['name']} ({info['cipher']['bits']} bits)"
    offered = info["alpn_offered"]
    if offered is None:
        yield "alpn: not offered"
    else:
        yield f"alpn: {info['alpn'] or 'none agreed'} (offered: {', '.join(offered)})"
    if info["sni"]:
        yield f"sni: {info['sni']}"
    else:
        yield f"sni: not sent ({info['servername']} is an IP address, checked as one)"
    yield f"backend: {info['backend']}"
    yield f"session resumed: {'yes' if info['session_reused'] else 'no'}"
    leaf = info["peer_certificate"]
    if leaf is None:
        yield "peer certificate: none"
    else:
        yield "peer certificate:"
        yield f"  subject: {_dn(leaf['subject'])}"
        yield f"  issuer: {_dn(leaf['issuer'])}"
        yield f"  subjectaltname: {leaf.get('subjectaltname', '(none)')}"
        yield f"  key: {_key(leaf)}"
        yield f"  valid_from: {leaf['valid_from']}"
        yield f"  valid_to: {leaf['valid_to']}"
        yield f"  fingerprint256: {leaf['fingerprint256']}"
        yield f"  serialNumber: {leaf['serialNumber']}"
        yield "chain:"
        for depth, cert in enumerate(info["chain"]):
            yield f"  {depth} subject: {_dn(cert['subject'])}"
            yield f"    issuer: {_dn(cert['issuer'])}"
    yield f"authorized: {'true' if info['authorized'] else 'false'}"
    if info["authorization_error"]:
        yield f"authorization_error: {info['authorization_error']} ({info['authorization_reason']})"


def _print_lines(lines: Iterator[str], stream: TextIO) -> None:
    for line in lines:
        print(line, file=stream)
    stream.flush()


# ----------------------------------------------------------------------
# Relaying


class _StdoutClosed(Exception):
    """Whoever reads stdout stopped (``| head``): it has what it wanted."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        raise _StdoutClosed from None


class _CRLF:
    """LF -> CRLF for the lines of stdin, leaving CRLF alone, across reads."""

    def __init__(self) -> None:
        self._after_cr = False

    def __call__(self, data: bytes) -> bytes:
        out = re.sub(rb"(?<!\r)\n", b"\r\n", data)
        if self._after_cr and data.startswith(b"\n"):
            out = out[1:]  # its CR ended the previous read
        self._after_cr = data.endswith(b"\r")
        return out


def relay(tls: TLSSocket, *, first: bytes, crlf: bool, idle: float, note: TextIO | None) -> None:
    """Copy stdin to the server and the server's bytes to stdout until the
    server closes (or, after the end of input, is silent for ``idle``
    seconds).  Raises the connection's errors."""
    out_fd = sys.stdout.fileno()
    in_fd: int | None = None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        in_fd = sys.stdin.fileno()
    convert = _CRLF() if crlf else None
    outbox = bytearray()
    retry: bytes | None = None  # a send() to repeat as it was (want-write)
    input_done = in_fd is None
    half_closed = False
    idle_deadline: float | None = None
    tls.settimeout(0.0)
    if first:
        _write_all(out_fd, first)
    # select(), not epoll: stdin may be a regular file (< request.txt),
    # which epoll refuses and select() reports as always readable.
    with selectors.SelectSelector() as selector:
        sock_fd = tls.fileno()
        selector.register(sock_fd, selectors.EVENT_READ)
        stdin_watched = False
        while True:
            if retry is not None or outbox:
                chunk = retry if retry is not None else bytes(outbox[:CHUNK])
                try:
                    sent = tls.send(chunk)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    retry = chunk
                else:
                    retry = None
                    del outbox[:sent]
            if input_done and not half_closed and retry is None and not outbox:
                half_closed = True
                idle_deadline = time.monotonic() + idle
                if tls.version() == "TLSv1.3":
                    tls.settimeout(idle)
                    try:
                        tls.shutdown(socket.SHUT_WR)
                    except OSError:
                        # The server closed first (ENOTCONN, EPIPE): its last
                        # bytes and its close_notify, or its reset, are
                        # waiting to be read, and reading says which.
                        pass
                    finally:
                        tls.settimeout(0.0)
            want_stdin = not input_done and retry is None and len(outbox) < MAX_OUTBOX
            if want_stdin != stdin_watched:
                assert in_fd is not None
                if want_stdin:
                    selector.register(in_fd, selectors.EVENT_READ)
                else:
                    selector.unregister(in_fd)
                stdin_watched = want_stdin
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if retry is not None else 0)
            selector.modify(sock_fd, events)
            if tls.pending():
                wait: float | None = 0.0
            elif idle_deadline is not None:
                wait = max(idle_deadline - time.monotonic(), 0.0)
            else:
                wait = None
            ready = {key.fd for key, _ in selector.select(wait)}
            if in_fd is not None and in_fd in ready:
                data = os.read(in_fd, CHUNK)
                if data:
                    outbox += convert(data) if convert is not None else data
                else:
                    input_done = True
            if sock_fd in ready or tls.pending():
                # Until want-read: the close_notify that followed the data
                # may already be processed, with nothing left on the socket
                # to wake the selector.
                while True:
                    try:
                        data = tls.recv(CHUNK)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    if not data:
                        return  # the server's close_notify
                    if idle_deadline is not None:
                        idle_deadline = time.monotonic() + idle
                    _write_all(out_fd, data)
            elif not ready and idle_deadline is not None and time.monotonic() >= idle_deadline:
                if note is not None:
                    print(
                        f"the server sent nothing for {idle:g} s after the end of input; closing",
                        file=note,
                    )
                return


# ----------------------------------------------------------------------
# The command


def run(args: argparse.Namespace) -> int:
    """Run ``securepair connect``; returns the exit status."""
    args.host, args.port = parse_target(args.target)
    if not args.timeout > 0:
        raise CommandError("--timeout must be more than 0 seconds")
    if args.servername is not None and not args.servername.strip():
        raise CommandError("--servername must not be empty")
    servername = args.servername or args.host
    if servername.endswith(".") and not servername.endswith(".."):
        # A fully qualified name's root dot is not part of SNI (RFC 6066 3)
        # nor of the names in certificates.
        servername = servername[:-1]
    _check_servername(servername, given=args.servername is not None)
    config = _config(args)
    deadline = time.monotonic() + args.timeout
    try:
        tls = _handshake(args, config, servername, deadline)
    except CertificateVerificationError as exc:
        return _stopped_at_verification(exc, args, servername)
    except _Failed as exc:
        print(f"securepair connect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    where = _where(args.host, args.port)
    try:
        with _failures(where, "handshake"):
            first = _settle(tls, min(SETTLE_WAIT, max(deadline - time.monotonic(), 0.0)))
        info = details(tls, args, servername)
        verified = bool(info["authorized"]) or args.insecure
        status = EXIT_OK if verified else EXIT_UNAUTHORIZED
        if args.json:
            print(json.dumps(info, indent=2))
            return status
        if not args.quiet:
            _print_lines(_lines(info), sys.stderr)
            print("---", file=sys.stderr, flush=True)
        elif not verified:
            print(
                f"securepair connect: not authorized: {info['authorization_error']} "
                f"({info['authorization_reason']})",
                file=sys.stderr,
                flush=True,
            )
        with contextlib.suppress(_StdoutClosed), _failures(where, "connection"):
            relay(
                tls,
                first=first,
                crlf=args.crlf,
                idle=args.timeout,
                note=None if args.quiet else sys.stderr,
            )
        return status
    except _Failed as exc:
        print(f"securepair connect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        with contextlib.suppress(OSError, SecurePairError):
            tls.settimeout(None)
            tls.close()


@contextlib.contextmanager
def _failures(where: str, stage: str) -> Iterator[None]:
    """Turn what the connection raises after the handshake into one line."""
    try:
        yield
    except RaggedEOFError:
        when = " right after the handshake" if stage == "handshake" else ""
        raise _Failed(
            f"{where} closed the connection{when} without close_notify: what it sent "
            "may have been cut off"
        ) from None
    except SecurePairError as exc:
        raise _tls_failure(exc, where, during=stage) from None
    except OSError as exc:
        raise _Failed(f"connection to {where} failed: {exc.strerror or exc}") from None


def _stopped_at_verification(
    exc: CertificateVerificationError, args: argparse.Namespace, servername: str
) -> int:
    """The stdlib backend refused the certificate: report it as such."""
    reason = explain(exc.code, servername=servername)
    if args.json:
        print(
            json.dumps(
                {
                    "host": args.host,
                    "port": args.port,
                    "servername": servername,
                    "backend": "stdlib",
                    "authorized": False,
                    "authorization_error": exc.code,
                    "authorization_reason": reason,
                    "error": str(exc),
                },
                indent=2,
            )
        )
    print(
        f"securepair connect: not authorized: {exc.code} ({reason}); the stdlib backend "
        "stops at a failed verification (--backend auto completes the handshake and "
        "shows the connection)",
        file=sys.stderr,
    )
    return EXIT_UNAUTHORIZED
