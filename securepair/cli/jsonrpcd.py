"""A JSON-RPC daemon of the classic kind, with ``securepair serve`` in front.

Many daemons (bitcoind's ``-server`` mode and the many built like it) speak
JSON-RPC over plain HTTP with Basic auth on 127.0.0.1, and leave TLS to
something in front of them: stunnel, or ``securepair serve``.  This is such
a daemon, small and self-contained (the standard library only).  It is what
``securepair demo`` starts, and ``examples/jsonrpc_daemon.py`` is this file.

The classic set-up, one command each, in an empty folder::

    securepair gencert                  # server.cert and server.pem
    printf 'user = "alice"\\npassword = "correct horse"\\n' > rpc.toml
    python examples/jsonrpc_daemon.py --config rpc.toml   # 127.0.0.1:8332
    securepair serve --listen 127.0.0.1:8443 --forward 127.0.0.1:8332
    curl --cacert server.cert -u 'alice:correct horse' \\
        --data '{"jsonrpc":"2.0","method":"getinfo","id":1}' https://127.0.0.1:8443/

which answers ``{"jsonrpc":"2.0","result":{"version":"...","server":
"jsonrpcd"},"id":1}``.  The daemon itself stays on 127.0.0.1, unencrypted;
only ``serve`` is reachable from outside, and only over TLS.  The daemon
also runs as ``python -m securepair.cli.jsonrpcd``.

The configuration file is TOML::

    user = "alice"
    password = "correct horse"
    listen = "127.0.0.1:8332"       # optional; this is the default

``--user``, ``--password-file`` and ``--listen`` override it.

What it serves
==============

``POST /`` with HTTP Basic credentials and a JSON-RPC 2.0 request, a batch
of them, or a 1.0-style ``{"method": ..., "params": ..., "id": ...}``.  The
methods are ``echo`` (returns its params), ``add`` (the sum of a list of
numbers), ``getinfo`` (the version) and ``help`` (the method names, or one
method's description).  JSON-RPC errors come back with HTTP 200, as JSON-RPC
2.0 over HTTP has it: -32700 parse error, -32600 invalid request, -32601
method not found, -32602 invalid params.

Every request without valid credentials gets ``401 Authorization Required``
and a ``WWW-Authenticate`` challenge, whatever else is wrong with it: a
malformed request, or an empty one (the two empty lines of someone typing at
``openssl s_client``) gets the 401 and the connection is closed.  So a
client that forgot its credentials, or reached the daemon without TLS
through the wrong port, learns exactly that.  Other methods than POST get
405.  Request heads over 16 KiB get 431, bodies over 1 MiB 413: the daemon
reads a whole request into memory before answering, so both are bounded.

The HTTP/1.1 reader is the daemon's own, a few dozen lines: it keeps
connections alive (unless ``Connection: close`` or HTTP/1.0), answers
``Expect: 100-continue`` (curl sends it for large bodies), and refuses
chunked bodies (501), which JSON-RPC clients do not send.  Each connection
is served by its own thread.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hmac
import io
import ipaddress
import json
import math
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, NoReturn, cast

try:
    from .._version import __version__
except ImportError:  # run as a script (examples/jsonrpc_daemon.py): no parent package
    try:
        from securepair._version import __version__
    except ImportError:
        __version__ = "unknown"

__all__ = ["JSONRPCServer", "main", "serve"]

#: Where the daemon listens unless told otherwise: bitcoind's RPC port.
DEFAULT_LISTEN = ("127.0.0.1", 8332)

#: Request line and headers together.  Real JSON-RPC clients send a few
#: hundred bytes; 16 KiB is what many servers allow and keeps a thread's
#: worst case small.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
#: A JSON-RPC request is read whole before it is parsed; 1 MiB is far more
#: than any call of this daemon needs and bounds what a client can pin.
MAX_BODY_BYTES = 1024 * 1024
#: A connection idle this long between requests (or stalled within one) is
#: closed, so a forgotten keep-alive connection does not hold a thread.
IDLE_TIMEOUT = 60.0
#: After a response that closes the connection, unread input is drained
#: for this long before the socket is closed.  Closing with unread bytes
#: makes the kernel send RST, which can destroy the response in flight
#: before the client reads it (the "lingering close" of HTTP servers).
LINGER_SECONDS = 2.0

REALM = "jsonrpc"

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Authorization Required",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}
_TEXTS = {
    400: "the Content-Length header is not a single number",
    401: "this JSON-RPC server needs a user and password (HTTP Basic auth)",
    404: "JSON-RPC requests go to /",
    405: "JSON-RPC requests are POSTed",
    411: "a POST needs a Content-Length header",
    413: f"the request body is over {MAX_BODY_BYTES} bytes",
    431: f"the request line and headers are over {MAX_HEAD_BYTES} bytes",
    501: "chunked (Transfer-Encoding) request bodies are not supported",
}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD = re.compile(rb"[A-Z]+")
_EMPTY_LINES = (b"\r\n", b"\n")


# -- JSON-RPC ------------------------------------------------------------------


class _InvalidParams(Exception):
    """The method exists but its params are wrong: error -32602."""


def _echo(params: Any) -> Any:
    return [] if params is None else params


def _add(params: Any) -> Any:
    numbers = [] if params is None else params
    if not isinstance(numbers, list) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        raise _InvalidParams("add takes a list of numbers, such as [1, 2.5]")
    total = sum(numbers)
    # json.dumps cannot write an infinite float or an int over 4300 digits.
    if isinstance(total, float) and not math.isfinite(total):
        raise _InvalidParams("the sum is too large")
    if isinstance(total, int) and total.bit_length() > 14_000:
        raise _InvalidParams("the sum is too large")
    return total


def _getinfo(params: Any) -> Any:
    if params not in (None, [], {}):
        raise _InvalidParams("getinfo takes no params")
    return {"version": __version__, "server": "jsonrpcd"}


def _help(params: Any) -> Any:
    if params in (None, [], {}):
        return sorted(_METHODS)
    if isinstance(params, list) and len(params) == 1:
        name = params[0]
    elif isinstance(params, dict) and list(params) == ["method"]:
        name = params["method"]
    else:
        raise _InvalidParams('help takes no params, or one method name: ["add"]')
    if not isinstance(name, str) or name not in _METHODS:
        raise _InvalidParams(f"no method {name!r}; the methods are {', '.join(sorted(_METHODS))}")
    return _METHODS[name][1]


_METHODS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "echo": (_echo, "echo PARAMS...: returns its params as they came"),
    "add": (_add, "add [N, ...]: the sum of a list of numbers"),
    "getinfo": (_getinfo, "getinfo: the server's name and version"),
    "help": (_help, "help [METHOD]: the method names, or what METHOD does"),
}


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python's json accepts them by default.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a float")
    return value


def _error(version: str | None, id_: Any, code: int, message: str) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if version == "2.0":
        return {"jsonrpc": "2.0", "error": error, "id": id_}
    return {"result": None, "error": error, "id": id_}


def _call(request: Any) -> tuple[dict[str, Any] | None, str]:
    """One request of a call or batch: the response (None for a 2.0
    notification) and the method name for the log."""
    if not isinstance(request, dict):
        return _error("2.0", None, -32600, "invalid request: not a JSON object"), "-"
    # Without "jsonrpc" it is a 1.0-style call, answered in the 1.0 shape.
    version = request.get("jsonrpc")
    if "jsonrpc" in request and version != "2.0":
        return _error("2.0", None, -32600, 'invalid request: "jsonrpc" must be "2.0"'), "-"
    id_ = request.get("id")
    if isinstance(id_, bool) or not isinstance(id_, str | int | float | None):
        return _error(version, None, -32600, "invalid request: id must be a string or number"), "-"
    method = request.get("method")
    if not isinstance(method, str):
        return _error(version, id_, -32600, "invalid request: method must be a string"), "-"
    params = request.get("params")
    if not isinstance(params, list | dict | None):
        message = "invalid request: params must be a list or object"
        return _error(version, id_, -32600, message), method
    found = _METHODS.get(method)
    if found is None:
        response = _error(version, id_, -32601, f"method not found: {method!r}")
    else:
        try:
            result = found[0](params)
        except _InvalidParams as exc:
            response = _error(version, id_, -32602, f"invalid params: {exc}")
        else:
            if version == "2.0":
                response = {"jsonrpc": "2.0", "result": result, "id": id_}
            else:
                response = {"result": result, "error": None, "id": id_}
    if version == "2.0" and "id" not in request:
        return None, method
    return response, method


def _jsonrpc(body: bytes) -> tuple[bytes | None, str]:
    """The response body to a POSTed body (None: only notifications, so no
    content) and what to log as the method."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError deep nesting.
        response: Any = _error("2.0", None, -32700, "parse error: the body is not JSON")
        described = "-"
    else:
        if isinstance(payload, list):
            described = f"batch({len(payload)})"
            if not payload:
                response = _error("2.0", None, -32600, "invalid request: an empty batch")
            else:
                answers = [answer for answer, _ in map(_call, payload) if answer is not None]
                response = answers or None
        else:
            response, described = _call(payload)
    if response is None:
        return None, described
    try:
        text = json.dumps(response, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):
        # Params nested nearly as deep as the parser allows can be too deep
        # to write back out; the call is answered all the same.
        text = json.dumps(_error("2.0", None, -32603, "internal error: result too deep"))
    return text.encode() + b"\n", described


# -- HTTP ----------------------------------------------------------------------


class _Gone(Exception):
    """The client went away (or stalled) mid-request: close, no answer."""


class _Malformed(Exception):
    """Not an HTTP/1.x request: 401, then close."""


class _HeadTooLarge(Exception):
    """Request line and headers over the limit: 431, then close."""


@dataclass
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, list[str]]

    def one(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values and len(values) == 1 else None

    def tokens(self, name: str) -> set[str]:
        return {
            token.strip().lower()
            for value in self.headers.get(name, [])
            for token in value.split(",")
        }

    @property
    def keep_alive(self) -> bool:
        return self.version == "HTTP/1.1" and "close" not in self.tokens("connection")


def _format_address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loggable(text: str, limit: int = 40) -> str:
    # Method names and targets come from the client: keep log lines one line.
    if text.isprintable() and " " not in text and len(text) <= limit:
        return text
    return repr(text[:limit])


class _Handler(socketserver.StreamRequestHandler):
    """One connection: requests, one after another, until it closes."""

    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.rpc_server = cast("JSONRPCServer", self.server)
        super().setup()
        self.connection.settimeout(self.rpc_server.idle_timeout)
        self.peer = _format_address(self.client_address)

    def finish(self) -> None:
        self.rpc_server._track(self.connection, add=False)
        super().finish()

    def handle(self) -> None:
        try:
            while True:
                outcome = self._one_request()
                if outcome == "close":
                    self._linger()
                if outcome != "keep":
                    return
        except (_Gone, OSError):
            # Timeouts, resets and half-sent requests end the connection
            # quietly; there is nobody left to answer.
            return

    # -- reading --

    def _line(self, budget: int) -> bytes | None:
        if budget <= 0:
            raise _HeadTooLarge
        line = self.rfile.readline(budget)
        if not line:
            return None
        if not line.endswith(b"\n"):
            if len(line) >= budget:
                raise _HeadTooLarge
            raise _Gone
        return line

    def _read_head(self) -> _Head | None:
        # A TLS ClientHello (a client that should have gone through
        # securepair serve) has no line end to wait for: refuse it at its
        # first byte, so the client sees an HTTP answer, not a timeout.
        first = cast("io.BufferedReader", self.rfile).peek(1)[:1]
        if not first:
            return None
        if first not in b"\r\n" and not b"A" <= first <= b"Z":
            raise _Malformed
        budget = MAX_HEAD_BYTES
        line = self._line(budget)
        if line is None:
            return None
        budget -= len(line)
        if line in _EMPTY_LINES:
            # One empty line before a request is to be ignored (RFC 9112,
            # 2.2); a second one is an empty request.
            line = self._line(budget)
            if line is None:
                return None
            budget -= len(line)
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3:
            raise _Malformed
        method, target, version = parts
        if (
            not _METHOD.fullmatch(method)
            or version not in (b"HTTP/1.0", b"HTTP/1.1")
            or not (target.startswith(b"/") or target == b"*")
            or not target.isascii()
        ):
            raise _Malformed
        headers: dict[str, list[str]] = {}
        count = 0
        while True:
            line = self._line(budget)
            if line is None:
                raise _Gone
            budget -= len(line)
            if line in _EMPTY_LINES:
                break
            count += 1
            if count > MAX_HEADERS:
                raise _HeadTooLarge
            name, colon, value = line.partition(b":")
            # A name must be a token: this also refuses obsolete line folding
            # and whitespace before the colon (RFC 9112, 5.1 and 5.2).
            if not colon or not _TOKEN.fullmatch(name):
                raise _Malformed
            headers.setdefault(name.decode("ascii").lower(), []).append(
                value.strip(b" \t\r\n").decode("latin-1")
            )
        return _Head(method.decode(), target.decode(), version.decode(), headers)

    def _content_length(self, head: _Head) -> tuple[int | None, int | None]:
        """(body length or None, or the status that refuses the request)."""
        if "transfer-encoding" in head.headers:
            return None, 501
        values = head.headers.get("content-length")
        if not values:
            return None, None
        parts = {part.strip() for value in values for part in value.split(",")}
        if len(parts) != 1:
            return None, 400
        (text,) = parts
        if not (text.isascii() and text.isdigit()):
            return None, 400
        # More digits than any body we accept: do not convert a huge number.
        return (int(text) if len(text) <= 12 else MAX_BODY_BYTES + 1), None

    def _authorized(self, head: _Head) -> bool:
        value = head.one("authorization")
        if value is None:
            return False
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.rpc_server.credentials)

    def _read_body(self, length: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Gone
        return body

    # -- answering --

    def _one_request(self) -> str:
        """Serve one request: "keep" (next request), "close" (answered, now
        close) or "gone" (close without a word)."""
        try:
            head = self._read_head()
        except _HeadTooLarge:
            return self._answer(None, 431, close=True)
        except _Malformed:
            return self._answer(None, 401, close=True, rpc="(malformed)")
        if head is None:
            return "gone"
        length, refusal = self._content_length(head)
        continues = head.version == "HTTP/1.1" and "100-continue" in head.tokens("expect")
        if not self._authorized(head):
            if refusal is not None or continues or (length or 0) > MAX_BODY_BYTES:
                return self._answer(head, 401, close=True)
            if length:
                self._read_body(length)
            return self._answer(head, 401, close=not head.keep_alive)
        if refusal is not None:
            return self._answer(head, refusal, close=True)
        if length is not None and length > MAX_BODY_BYTES:
            return self._answer(head, 413, close=True)
        if head.method != "POST" or head.target.partition("?")[0] != "/":
            status = 405 if head.method != "POST" else 404
            if length and continues:
                return self._answer(head, status, close=True)
            if length:
                self._read_body(length)
            return self._answer(head, status, close=not head.keep_alive)
        if length is None:
            return self._answer(head, 411, close=True)
        if continues:
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, rpc = _jsonrpc(self._read_body(length))
        if body is None:
            return self._answer(head, 204, close=not head.keep_alive, rpc=rpc)
        return self._answer(
            head, 200, close=not head.keep_alive, rpc=rpc, body=body, json_body=True
        )

    def _answer(
        self,
        head: _Head | None,
        status: int,
        *,
        close: bool,
        rpc: str = "-",
        body: bytes | None = None,
        json_body: bool = False,
    ) -> str:
        reason = _REASONS[status]
        if body is None and status != 204:
            body = f"{status} {reason}: {_TEXTS[status]}\n".encode()
        lines = [f"HTTP/1.1 {status} {reason}", "Server: jsonrpcd"]
        if status != 204:
            kind = "application/json" if json_body else "text/plain; charset=utf-8"
            lines += [f"Content-Type: {kind}", f"Content-Length: {len(body or b'')}"]
        if status == 401:
            lines.append(f'WWW-Authenticate: Basic realm="{REALM}"')
        elif status == 405:
            lines.append("Allow: POST")
        if close:
            lines.append("Connection: close")
        if head is not None and head.method == "HEAD":
            body = None
        method = "-" if head is None else _loggable(head.method)
        target = "-" if head is None else _loggable(head.target)
        # Logged before sending, so that a client that has its answer can
        # rely on the line being there.
        self.rpc_server.log_line(f"{self.peer} {method} {target} {_loggable(rpc)} {status}")
        self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return "close" if close else "keep"

    def _linger(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained <= MAX_BODY_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


# -- the server ----------------------------------------------------------------


class JSONRPCServer(socketserver.ThreadingTCPServer):
    """The daemon: a listening socket and a thread per connection.

    ``address`` is ``(host, port)``; port 0 picks a free one, which
    ``server_address`` then shows.  ``log`` receives one line per request
    (client, HTTP method, target, JSON-RPC method, status), or nothing when
    None.  Use :func:`serve` to start one in the background; the command
    line runs :meth:`serve_forever` itself.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        user: str,
        password: str,
        *,
        log: IO[str] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if not user or ":" in user:
            raise ValueError("the user must be non-empty and without ':' (HTTP Basic auth)")
        if not password:
            raise ValueError("the password is empty")
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.credentials = f"{user}:{password}".encode()
        self.log = log
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = False
        self._serving = False
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if not add:
                self._connections.discard(sock)
                return
            if not self._closed:
                self._connections.add(sock)
                return
        # Accepted just as the server closed: end it like the others.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection from the moment it is accepted, before its
        thread starts, so that :meth:`server_close` cannot miss it."""
        self._track(request, add=True)
        super().process_request(request, client_address)

    def log_line(self, line: str) -> None:
        """Write one line to the log, whole, even with many threads."""
        if self.log is None:
            return
        with self._lock:
            try:
                self.log.write(f"jsonrpcd: {line}\n")
                self.log.flush()
            except (OSError, ValueError):
                pass  # a closed or broken log must not stop the daemon

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until :meth:`shutdown`."""
        self._serving = True
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving = False

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait for it; does nothing when it
        is not running (the base class would wait forever)."""
        if self._serving:
            super().shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def server_close(self) -> None:
        """Close the listening socket and every open connection."""
        super().server_close()
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        for sock in connections:
            # A connection may close in its own thread meanwhile.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """:meth:`shutdown`, then :meth:`server_close`."""
        self.shutdown()
        self.server_close()

    def __exit__(self, *args: object) -> None:
        self.close()


def serve(
    address: tuple[str, int], user: str, password: str, *, log: IO[str] | None = None
) -> JSONRPCServer:
    """Start the daemon in a background thread and return it, listening.

    Stop it with ``close()`` (or ``shutdown()`` then ``server_close()``), or
    use it as a context manager.
    """
    server = JSONRPCServer(address, user, password, log=log)
    # Set before the thread starts, so an early shutdown() still waits for it.
    server._serving = True
    server._thread = threading.Thread(
        target=server.serve_forever, args=(0.1,), name="jsonrpcd", daemon=True
    )
    server._thread.start()
    return server


# -- command line --------------------------------------------------------------


class _ConfigError(Exception):
    """A problem with the options or the configuration file: one line, exit 2."""


def _parse_listen(text: str, where: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        colon = ""  # an IPv6 address needs brackets: [::1]:8332
    if not colon or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise _ConfigError(f"{where} {text!r}: expected HOST:PORT, such as 127.0.0.1:8332")
    return host, int(port)


def _read_config(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise _ConfigError(f"config file {path}: not found") from None
    except OSError as exc:
        raise _ConfigError(f"config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    for key, value in data.items():
        if key not in ("user", "password", "listen"):
            raise _ConfigError(
                f"config file {path}: unknown setting {key!r} (user, password and listen are)"
            )
        if not isinstance(value, str):
            raise _ConfigError(f"config file {path}: {key} must be a string in quotes")
    return cast("dict[str, str]", data)


def _settings(args: argparse.Namespace) -> tuple[tuple[str, int], str, str]:
    config = _read_config(args.config) if args.config else {}
    user = args.user if args.user is not None else config.get("user")
    if not user:
        if args.config:
            raise _ConfigError(f'no user: put user = "..." in {args.config}, or give --user')
        raise _ConfigError('no user: give --user, or --config FILE with user = "..."')
    if ":" in user:
        raise _ConfigError(f"user {user!r}: a user name cannot contain ':' (HTTP Basic auth)")
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as file:
                password = file.read()
        except OSError as exc:
            raise _ConfigError(f"--password-file {args.password_file}: {exc.strerror}") from None
        # The newline that editors and `echo` add is not part of the password.
        password = password.removesuffix("\n").removesuffix("\r")
        if not password:
            raise _ConfigError(f"--password-file {args.password_file}: empty")
    else:
        password = config.get("password", "")
        if not password and args.config:
            raise _ConfigError(
                f'no password: put password = "..." in {args.config}, or give --password-file'
            )
        if not password:
            raise _ConfigError(
                'no password: give --password-file, or --config FILE with password = "..."'
            )
    if args.listen is not None:
        listen = _parse_listen(args.listen, "--listen")
    elif "listen" in config:
        listen = _parse_listen(config["listen"], f"config file {args.config}: listen")
    else:
        listen = DEFAULT_LISTEN
    return listen, user, password


def build_parser() -> argparse.ArgumentParser:
    """The options of the daemon."""
    parser = argparse.ArgumentParser(
        prog="jsonrpcd",
        description="A JSON-RPC-over-HTTP daemon with Basic auth, for 127.0.0.1; put "
        "securepair serve in front of it for TLS.",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8332; port 0 picks a free one)",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file: user, password, listen")
    parser.add_argument("--user", help="the user name clients must send")
    parser.add_argument(
        "--password-file", metavar="FILE", help="file holding the password (one line)"
    )
    parser.add_argument("--quiet", action="store_true", help="no log line per request")
    return parser


class _Terminated(Exception):
    """SIGTERM arrived: stop serving and exit 0."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon until it is interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        address, user, password = _settings(args)
    except _ConfigError as exc:
        print(f"jsonrpcd: error: {exc}", file=sys.stderr)
        return 2
    try:
        server = JSONRPCServer(address, user, password, log=None if args.quiet else sys.stderr)
    except OSError as exc:
        shown = _format_address(address)
        print(f"jsonrpcd: error: cannot listen on {shown}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with server:
        shown = _format_address(server.server_address)
        if not ipaddress.ip_address(server.socket.getsockname()[0].partition("%")[0]).is_loopback:
            print(
                f"jsonrpcd: warning: {shown} is not a loopback address; passwords cross "
                "the network in clear unless securepair serve is in front",
                file=sys.stderr,
                flush=True,
            )
        print(f"jsonrpcd listening on {shown}", flush=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            server.serve_forever()
        except _Terminated:
            return 0
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
