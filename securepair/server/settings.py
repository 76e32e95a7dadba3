"""The options of ``securepair serve``, from flags or a TOML file, checked.

One table, :data:`OPTIONS`, defines every option once: the command line
makes its flags from it, and a ``--config`` file takes the same names as
keys (``max-connections = 500``; underscores work too).  Flags given on the
command line win over the file.  Relative paths in a file are relative to
the file's folder; on the command line, to the current folder.

:func:`load` turns the merged values into a :class:`ServeSettings` and checks
everything a server can check before it listens: files exist and are
readable, the key matches its certificate and its passphrase decrypts it,
the cipher string is one OpenSSL accepts and not a broken one, addresses
parse, the allowlist is valid.  Every problem is a :class:`SettingsError`
with one line that names the option.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TLSConfig, hostname_matches
from ..errors import ConfigError
from ..records import ClientHello
from .allowlist import Allowlist

__all__ = [
    "OPTIONS",
    "Option",
    "Route",
    "ServeSettings",
    "SettingsError",
    "load",
    "parse_address",
]


class SettingsError(ValueError):
    """A bad option: the message is one line and names it."""


@dataclass(frozen=True)
class Option:
    """One option of ``serve``: a flag ``--NAME`` and a config key ``NAME``."""

    name: str
    #: ``str``, ``int``, ``float``, ``bool`` (a switch) or ``list`` (repeatable).
    kind: type
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        str,
        "127.0.0.1:8443",
        "address to listen on (:PORT for every IPv4 address, [::]:PORT for IPv6)",
        "ADDR:PORT",
    ),
    Option(
        "forward",
        str,
        None,
        "plaintext service to relay to (the default route)",
        "HOST:PORT",
    ),
    Option(
        "route",
        list,
        [],
        "relay clients that ask for HOST (SNI; *.example.com allowed) to another "
        "service, decided from the ClientHello before any certificate is sent (repeatable)",
        "HOST=ADDR:PORT",
    ),
    Option("echo", bool, False, "echo every line back instead of relaying (for testing clients)"),
    Option(
        "starttls",
        str,
        None,
        "speak PROTO's plaintext phase and upgrade on its STARTTLS command",
        "PROTO",
    ),
    Option(
        "hostname",
        str,
        None,
        "the server's name in STARTTLS greetings (SMTP banner, XMPP domain; "
        "default: the certificate's first DNS name)",
        "NAME",
    ),
    Option(
        "data-dir",
        str,
        None,
        "folder of the default certificate and key (default: the config file's "
        "folder, else the current one)",
        "DIR",
    ),
    Option("cert", str, "server.cert", "certificate chain, leaf first (PEM)", "FILE"),
    Option("key", str, "server.pem", "private key of the certificate (PEM)", "FILE"),
    Option("passphrase-file", str, None, "file whose first line decrypts the key", "FILE"),
    Option(
        "sni-cert",
        list,
        [],
        "serve another certificate to clients that ask for HOST (SNI; *.example.com "
        "allowed; repeatable)",
        "HOST=CERT,KEY",
    ),
    Option("ca", str, None, "CA certificates that client certificates must chain to", "FILE"),
    Option("request-cert", bool, False, "ask clients for a certificate (needs --ca)"),
    Option(
        "reject-unauthorized",
        bool,
        False,
        "refuse clients whose certificate is missing or does not verify (with --request-cert)",
    ),
    Option(
        "ciphers",
        str,
        None,
        "OpenSSL cipher string for TLS 1.2 (default: OpenSSL's secure default; "
        "RC4, 3DES, NULL, export and anonymous suites are refused)",
        "STRING",
    ),
    Option("alpn", list, [], "ALPN protocol to offer, most preferred first (repeatable)", "NAME"),
    Option(
        "min-version",
        str,
        "TLSv1.2",
        "lowest TLS version",
        None,
        ("TLSv1.2", "TLSv1.3"),
    ),
    Option(
        "backend",
        str,
        "auto",
        "TLS backend",
        None,
        ("auto", "stdlib", "pyopenssl"),
    ),
    Option(
        "allow",
        list,
        [],
        "client addresses allowed to connect: an IP, a wildcard such as 192.168.1.*, "
        "a CIDR subnet, or * (repeatable; 127.0.0.1 and ::1 are always allowed)",
        "ADDR",
    ),
    Option(
        "proxy-protocol",
        bool,
        False,
        "accept PROXY protocol v1/v2 headers from the --trusted-proxy addresses "
        "(required from them, refused from anyone else)",
    ),
    Option(
        "trusted-proxy",
        list,
        [],
        "address of a load balancer that sends PROXY headers (same forms as --allow; repeatable)",
        "ADDR",
    ),
    Option(
        "max-connections", int, 1000, "connections served at once by each worker; more wait", "N"
    ),
    Option(
        "handshake-timeout",
        float,
        30.0,
        "seconds a client has from connecting to a finished handshake",
        "SECONDS",
    ),
    Option(
        "idle-timeout",
        float,
        300.0,
        "close a connection with no traffic either way for this long (0: never)",
        "SECONDS",
    ),
    Option(
        "stop-timeout",
        float,
        30.0,
        "on SIGTERM/SIGINT, seconds to let connections in flight finish",
        "SECONDS",
    ),
    Option("workers", int, 1, "processes sharing the port (SO_REUSEPORT)", "N"),
    Option("log-format", str, "text", "log line format", None, ("text", "json")),
    Option("quiet", bool, False, "log only problems, not every connection"),
)

_BY_KEY = {o.name: o for o in OPTIONS}
_STARTTLS_FORWARD = ("smtp", "imap", "pop3")


@dataclass(frozen=True, kw_only=True)
class Route:
    """Clients that ask for ``pattern`` (SNI) go to ``target``."""

    pattern: str
    target: tuple[str, int]


@dataclass(frozen=True, kw_only=True, eq=False)
class ServeSettings:
    """Everything ``serve`` runs with, checked."""

    #: Address and port to listen on (port 0: any free port).
    listen: tuple[str, int]
    #: The default plaintext service, or ``None`` (``echo``, or routes only).
    forward: tuple[str, int] | None
    #: SNI routes, tried in order before ``forward``.
    routes: tuple[Route, ...]
    #: Echo lines back instead of relaying.
    echo: bool
    #: The STARTTLS protocol spoken before TLS, or ``None`` for TLS at once.
    starttls: str | None
    #: The name the server gives in STARTTLS greetings.
    hostname: str
    #: The server's TLS configuration (SNI certificates added).
    tls: TLSConfig
    allowlist: Allowlist
    #: ``None`` unless ``proxy-protocol`` is on.
    trusted_proxies: Allowlist | None
    max_connections: int
    handshake_timeout: float
    idle_timeout: float
    stop_timeout: float
    workers: int
    log_format: str
    quiet: bool

    def request_cert_unenforced(self) -> bool:
        """Client certificates are asked for but not required."""
        return self.tls.request_cert and not self.tls.reject_unauthorized

    def route_for(self, hello: ClientHello | None) -> tuple[str, int] | None:
        """The service for a client, from its ClientHello's SNI: exact
        routes first, then wildcards, then ``forward``."""
        name = hello.server_name if hello is not None else None
        if name and self.routes:
            for exact in (True, False):
                for route in self.routes:
                    if route.pattern.startswith("*.") != exact and hostname_matches(
                        route.pattern, name
                    ):
                        return route.target
        return self.forward


def parse_address(text: str, option: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` as ``(host, port)``."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise SettingsError(f"--{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8443")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise SettingsError(f"--{option} {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise SettingsError(f"--{option} {text!r}: write an IPv6 address in brackets, [::1]:PORT")
    if not host:
        if default_host is None:
            raise SettingsError(f"--{option} {text!r}: the host is missing")
        host = default_host
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(f"--{option} {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options in a TOML file, keys normalised to the flags' names and
    paths made absolute against the file's folder."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"--config {str(file)!r}: file not found") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise SettingsError(f"--config {str(file)!r}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"--config {str(file)!r}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"--config {str(file)!r}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("_", "-")
        option = _BY_KEY.get(key)
        if option is None:
            close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingsError(f"--config {str(file)!r}: unknown key {raw_key!r}{hint}")
        values[key] = _check_type(option, value, f"--config {str(file)!r}: {raw_key}")
    values.setdefault("data-dir", str(file.resolve().parent))
    base = file.resolve().parent
    for key in ("cert", "key", "passphrase-file", "ca", "data-dir"):
        if isinstance(values.get(key), str):
            values[key] = str(base / values[key])
    if "sni-cert" in values:
        values["sni-cert"] = [_absolute_sni(entry, base) for entry in values["sni-cert"]]
    return values


def _absolute_sni(entry: str, base: Path) -> str:
    host, sep, files = entry.partition("=")
    if not sep:
        return entry  # reported by load()
    return host + "=" + ",".join(str(base / f.strip()) for f in files.split(","))


def _check_type(option: Option, value: Any, where: str) -> Any:
    kind = option.kind
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where} must be a string or a list of strings")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be true or false")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SettingsError(f"{where} must be a {kind.__name__}")
    if option.choices is not None and value not in option.choices:
        raise SettingsError(f"{where} must be one of {', '.join(option.choices)}")
    return value


def _read_passphrase(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline()
    except FileNotFoundError:
        raise SettingsError(f"--passphrase-file {path!r}: file not found") from None
    except OSError as exc:
        raise SettingsError(
            f"--passphrase-file {path!r}: cannot read it ({exc.strerror})"
        ) from None
    passphrase = line.rstrip("\r\n")
    if not passphrase:
        raise SettingsError(f"--passphrase-file {path!r}: the first line is empty")
    return passphrase


def _tls_error(exc: ConfigError, names: Mapping[str, str]) -> SettingsError:
    option = names.get(exc.option, exc.option.replace("_", "-"))
    return SettingsError(f"--{option}: {exc.problem}")


def _tls_config(values: Mapping[str, Any], data_dir: Path) -> TLSConfig:
    names = {
        "cert": "cert",
        "key": "key",
        "ca": "ca",
        "passphrase": "passphrase-file",
        "ciphers": "ciphers",
        "alpn_protocols": "alpn",
        "request_cert": "request-cert",
    }

    def path(key: str) -> str | None:
        value = values.get(key)
        return None if value is None else str(data_dir / value)

    passphrase = None
    if values.get("passphrase-file"):
        passphrase = _read_passphrase(str(data_dir / values["passphrase-file"]))
    common: dict[str, Any] = {
        "backend": values["backend"],
        "ciphers": values.get("ciphers"),
        "alpn_protocols": list(values["alpn"]) or None,
        "min_version": values["min-version"],
        # A relay does not know whether its clients send close_notify before
        # closing; many (curl among them) do not.  The plaintext service
        # sees an ordinary end of stream either way.
        "allow_ragged_eof": True,
        # Client certificates are asked for and checked alike whatever
        # certificate the client's SNI name selects.
        "ca": path("ca"),
        "request_cert": values["request-cert"],
        # Without request-cert there is nothing to reject; TLSConfig's
        # default (True) keeps the stdlib backend usable, since
        # verify-but-don't-reject exists only on pyOpenSSL.
        "reject_unauthorized": values["reject-unauthorized"] or not values["request-cert"],
    }
    try:
        tls = TLSConfig(cert=path("cert"), key=path("key"), passphrase=passphrase, **common)
    except ConfigError as exc:
        raise _tls_error(exc, names) from None
    for entry in values["sni-cert"]:
        host, sep, files = entry.partition("=")
        parts = [f.strip() for f in files.split(",")]
        if not sep or not host or len(parts) != 2 or not all(parts):
            raise SettingsError(
                f"--sni-cert {entry!r}: expected HOST=CERT,KEY, e.g. "
                "api.example.com=api.cert,api.pem"
            )
        try:
            tls.add_context(
                host.strip(),
                TLSConfig(cert=str(data_dir / parts[0]), key=str(data_dir / parts[1]), **common),
            )
        except ConfigError as exc:
            raise SettingsError(f"--sni-cert {entry!r}: {exc.problem}") from None
    # Build the server context now: OpenSSL judges the cipher string (and
    # the certificate and key once more) only when a context is made.
    try:
        tls.backend_context(tls.resolved_backend(), server_side=True)
        for _, sni in tls._sni_contexts:
            sni.backend_context(sni.resolved_backend(), server_side=True)
    except ConfigError as exc:
        raise _tls_error(exc, names) from None
    return tls


def _certificate_name(tls: TLSConfig) -> str:
    """The first DNS name of the server certificate, else ``localhost``."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificates(tls._cache["pem"][0])[0]
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except (KeyError, ValueError, x509.ExtensionNotFound):
        return "localhost"
    return next((name for name in dns if "*" not in name), "localhost")


def load(values: Mapping[str, Any]) -> ServeSettings:
    """Check the merged option values (flag names as keys; missing keys take
    their defaults) and build the settings."""
    merged = {o.name: values.get(o.name, o.default) for o in OPTIONS}
    for key in values:
        if key not in _BY_KEY:
            raise SettingsError(f"unknown option {key!r}")
    for option in OPTIONS:
        if merged[option.name] is not None:
            merged[option.name] = _check_type(option, merged[option.name], f"--{option.name}")
    data_dir = Path(merged["data-dir"] or ".")
    # ":8443" listens everywhere, as stunnel's bare port does; the default
    # address, 127.0.0.1:8443, only on this machine.
    listen = parse_address(merged["listen"], "listen", default_host="0.0.0.0")
    forward = parse_address(merged["forward"], "forward") if merged["forward"] else None
    routes: list[Route] = []
    for entry in merged["route"]:
        host, sep, target = entry.partition("=")
        if not sep or not host.strip():
            raise SettingsError(
                f"--route {entry!r}: expected HOST=ADDR:PORT, e.g. api.example.com=127.0.0.1:9000"
            )
        try:
            address = parse_address(target, "route")
        except SettingsError as exc:
            # Name the whole entry: with several --route flags, the address
            # alone does not say which one is wrong.
            raise SettingsError(f"--route {entry!r}: {str(exc).partition(': ')[2]}") from None
        routes.append(Route(pattern=host.strip(), target=address))
    starttls = merged["starttls"]
    echo = merged["echo"]
    if starttls is not None:
        from ..starttls import PROTOCOLS

        starttls = starttls.lower()
        if starttls not in PROTOCOLS:
            raise SettingsError(
                f"--starttls {merged['starttls']!r}: unknown protocol; known: "
                + ", ".join(PROTOCOLS)
            )
        if PROTOCOLS[starttls].server is None:
            raise SettingsError(f"--starttls {starttls}: only the client side exists")
        if routes:
            raise SettingsError("--route works with TLS from the first byte, not with --starttls")
        if forward is not None and starttls not in _STARTTLS_FORWARD:
            raise SettingsError(
                f"--starttls {starttls} relays with --forward only for "
                f"{', '.join(_STARTTLS_FORWARD)} (whose greeting it can take over); "
                "use --echo to test a client"
            )
    if echo and (forward is not None or routes):
        raise SettingsError("--echo and --forward/--route exclude each other: choose one")
    if not echo and forward is None and not routes:
        raise SettingsError("nothing to serve: give --forward HOST:PORT, --route or --echo")
    for name in ("max-connections", "workers"):
        if merged[name] < 1:
            raise SettingsError(f"--{name} must be at least 1")
    for name in ("handshake-timeout", "stop-timeout"):
        if not merged[name] > 0:
            raise SettingsError(f"--{name} must be more than 0 seconds")
    if merged["idle-timeout"] < 0:
        raise SettingsError("--idle-timeout must be 0 (never) or more seconds")
    try:
        allowlist = Allowlist(merged["allow"])
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    trusted = None
    if merged["proxy-protocol"]:
        if not merged["trusted-proxy"]:
            raise SettingsError(
                "--proxy-protocol needs --trusted-proxy ADDR: the load balancers whose "
                "PROXY headers are believed"
            )
        try:
            trusted = Allowlist(
                merged["trusted-proxy"], option="--trusted-proxy", always_localhost=False
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    elif merged["trusted-proxy"]:
        raise SettingsError("--trusted-proxy is only used with --proxy-protocol")
    if merged["request-cert"] and not merged["ca"]:
        raise SettingsError(
            "--request-cert needs --ca FILE: the CAs that client certificates must chain to"
        )
    if merged["reject-unauthorized"] and not merged["request-cert"]:
        raise SettingsError(
            "--reject-unauthorized needs --request-cert (and --ca): "
            "without it no client certificate is asked for"
        )
    tls = _tls_config(merged, data_dir)
    return ServeSettings(
        listen=listen,
        forward=forward,
        routes=tuple(routes),
        echo=echo,
        starttls=starttls,
        hostname=merged["hostname"] or _certificate_name(tls),
        tls=tls,
        allowlist=allowlist,
        trusted_proxies=trusted,
        max_connections=merged["max-connections"],
        handshake_timeout=merged["handshake-timeout"],
        idle_timeout=merged["idle-timeout"],
        stop_timeout=merged["stop-timeout"],
        workers=merged["workers"],
        log_format=merged["log-format"],
        quiet=merged["quiet"],
    )
