"""The JSON-RPC daemon of the classic set-up (``securepair.cli.jsonrpcd``).

Real sockets on 127.0.0.1: the daemon in-process through ``serve()``, and
as a subprocess the way ``securepair demo`` and users start it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securepair import __version__
from securepair.cli import COMMANDS, jsonrpcd
from securepair.cli.jsonrpcd import JSONRPCServer, serve

ROOT = Path(__file__).resolve().parent.parent
USER = "alice"
PASSWORD = "correct horse"
TIMEOUT = 10.0


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def daemon(log: io.StringIO) -> Iterator[JSONRPCServer]:
    with serve(("127.0.0.1", 0), USER, PASSWORD, log=log) as server:
        yield server


def port_of(server: JSONRPCServer) -> int:
    return int(server.server_address[1])


def request(
    server: JSONRPCServer,
    body: Any = None,
    *,
    method: str = "POST",
    path: str = "/",
    auth: str | None = None,
    raw_body: bytes | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=TIMEOUT)
    try:
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        data = (
            raw_body
            if raw_body is not None
            else (None if body is None else json.dumps(body).encode())
        )
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def rpc(server: JSONRPCServer, body: Any) -> Any:
    status, response, data = request(server, body, auth=basic())
    assert status == 200, data
    assert response.getheader("Content-Type") == "application/json"
    return json.loads(data)


def raw(server: JSONRPCServer, data: bytes) -> bytes:
    """Send bytes as they are; everything the daemon answers, up to EOF."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def auth_head(length: int, *, extra: str = "") -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


# -- authentication --------------------------------------------------------------


def assert_401(status: int, response: http.client.HTTPResponse, body: bytes) -> None:
    assert status == 401
    assert response.reason == "Authorization Required"
    assert response.getheader("WWW-Authenticate") == 'Basic realm="jsonrpc"'
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert b"user and password" in body


def test_401_without_credentials(daemon: JSONRPCServer) -> None:
    assert_401(*request(daemon, {"jsonrpc": "2.0", "method": "getinfo", "id": 1}))


@pytest.mark.parametrize(
    "auth",
    [
        basic(password="wrong"),
        basic(user="mallory"),
        basic(password=PASSWORD + "x"),
        basic(password=""),
        "Basic " + base64.b64encode(PASSWORD.encode()).decode(),
        "Basic not*base64",
        "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "",
    ],
)
def test_401_with_wrong_credentials(daemon: JSONRPCServer, auth: str) -> None:
    assert_401(*request(daemon, {"method": "getinfo", "id": 1}, auth=auth))


def test_401_for_an_empty_request_then_close(daemon: JSONRPCServer) -> None:
    # What someone typing at `openssl s_client` sends: two empty lines.
    answer = raw(daemon, b"\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 Authorization Required\r\n")
    assert b'\r\nWWW-Authenticate: Basic realm="jsonrpc"' in head
    assert b"\r\nConnection: close" in head
    assert body.startswith(b"401 Authorization Required: ")


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n\r\n",
        b"\n\n",
        b"GET /\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST / HTTP/1.1\r\nbad header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nName : value\r\n\r\n",
        # A TLS ClientHello (no line end at all): refused at its first byte.
        b"\x16\x03\x01\x00\xf1\x01\x00\x00\xed\x03\x03" + bytes(32),
    ],
)
def test_401_for_malformed_requests_then_close(daemon: JSONRPCServer, data: bytes) -> None:
    answer = raw(daemon, data)
    assert answer.startswith(b"HTTP/1.1 401 Authorization Required\r\n")
    assert b"\r\nConnection: close" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_malformed_with_credentials_is_still_401(daemon: JSONRPCServer) -> None:
    answer = raw(daemon, f"POST / HTTP/1.1\r\nAuthorization: {basic()}\r\nbad\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_unauthorized_request_keeps_the_connection(daemon: JSONRPCServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(daemon), timeout=TIMEOUT)
    body = json.dumps({"jsonrpc": "2.0", "method": "getinfo", "id": 1}).encode()
    conn.request("POST", "/", body=body)
    first = conn.getresponse()
    first.read()
    assert first.status == 401
    sock = conn.sock
    conn.request("POST", "/", body=body, headers={"Authorization": basic()})
    second = conn.getresponse()
    assert second.status == 200
    assert json.loads(second.read())["result"]["server"] == "jsonrpcd"
    assert conn.sock is sock
    conn.close()


# -- JSON-RPC --------------------------------------------------------------------


def test_getinfo(daemon: JSONRPCServer) -> None:
    answer = rpc(daemon, {"jsonrpc": "2.0", "method": "getinfo", "id": 1})
    assert answer == {
        "jsonrpc": "2.0",
        "result": {"version": __version__, "server": "jsonrpcd"},
        "id": 1,
    }


@pytest.mark.parametrize(
    ("method", "params", "result"),
    [
        ("echo", ["a", 1, None, {"b": [2]}], ["a", 1, None, {"b": [2]}]),
        ("echo", {"x": "y"}, {"x": "y"}),
        ("add", [1, 2, 3], 6),
        ("add", [1, 2.5], 3.5),
        ("add", [], 0),
        ("add", [10**100, 1], 10**100 + 1),
        ("help", [], ["add", "echo", "getinfo", "help"]),
        ("help", ["add"], "add [N, ...]: the sum of a list of numbers"),
        ("help", {"method": "echo"}, "echo PARAMS...: returns its params as they came"),
        ("getinfo", {}, {"version": __version__, "server": "jsonrpcd"}),
    ],
)
def test_methods(daemon: JSONRPCServer, method: str, params: Any, result: Any) -> None:
    answer = rpc(daemon, {"jsonrpc": "2.0", "method": method, "params": params, "id": "x"})
    assert answer == {"jsonrpc": "2.0", "result": result, "id": "x"}


def test_params_may_be_left_out(daemon: JSONRPCServer) -> None:
    assert rpc(daemon, {"jsonrpc": "2.0", "method": "echo", "id": 3})["result"] == []
    assert rpc(daemon, {"jsonrpc": "2.0", "method": "help", "id": 3})["result"][0] == "add"


def error_of(answer: dict[str, Any]) -> tuple[int, str]:
    assert "result" not in answer
    return answer["error"]["code"], answer["error"]["message"]


def test_parse_error(daemon: JSONRPCServer) -> None:
    for body in [b"{", b"not json", b"\xff\xfe\x00", b'{"a": NaN}', b"[1e999]", b"[" * 100_000]:
        status, _, data = request(daemon, auth=basic(), raw_body=body)
        assert status == 200
        answer = json.loads(data)
        assert answer["jsonrpc"] == "2.0"
        assert answer["id"] is None
        assert error_of(answer)[0] == -32700


@pytest.mark.parametrize(
    "body",
    [
        5,
        "getinfo",
        False,
        [],
        {"jsonrpc": "2.0", "method": 1, "id": 1},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "1.5", "method": "getinfo", "id": 1},
        {"jsonrpc": "2.0", "method": "echo", "params": "x", "id": 1},
        {"jsonrpc": "2.0", "method": "getinfo", "id": [1]},
        {"jsonrpc": "2.0", "method": "getinfo", "id": True},
    ],
)
def test_invalid_request(daemon: JSONRPCServer, body: Any) -> None:
    code, message = error_of(rpc(daemon, body))
    assert code == -32600
    assert message.startswith("invalid request")


def test_method_not_found(daemon: JSONRPCServer) -> None:
    answer = rpc(daemon, {"jsonrpc": "2.0", "method": "stop", "id": 9})
    assert answer["id"] == 9
    assert error_of(answer) == (-32601, "method not found: 'stop'")


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        ("add", ["1", 2], "add takes a list of numbers"),
        ("add", [True], "add takes a list of numbers"),
        ("add", {"a": 1}, "add takes a list of numbers"),
        ("add", [1.5e308, 1.5e308], "the sum is too large"),
        ("getinfo", [1], "getinfo takes no params"),
        ("help", ["stop"], "no method 'stop'"),
        ("help", [1, 2], "help takes no params, or one method name"),
    ],
)
def test_invalid_params(daemon: JSONRPCServer, method: str, params: Any, words: str) -> None:
    answer = rpc(daemon, {"jsonrpc": "2.0", "method": method, "params": params, "id": 2})
    code, message = error_of(answer)
    assert code == -32602
    assert words in message
    assert answer["id"] == 2


def test_batch(daemon: JSONRPCServer) -> None:
    answer = rpc(
        daemon,
        [
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
            {"jsonrpc": "2.0", "method": "echo", "params": ["note"]},  # a notification
            {"jsonrpc": "2.0", "method": "nope", "id": 2},
            7,
            {"jsonrpc": "2.0", "method": "echo", "params": ["x"], "id": "three"},
        ],
    )
    assert answer == [
        {"jsonrpc": "2.0", "result": 3, "id": 1},
        {
            "jsonrpc": "2.0",
            "error": {"code": -32601, "message": "method not found: 'nope'"},
            "id": 2,
        },
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "invalid request: not a JSON object"},
            "id": None,
        },
        {"jsonrpc": "2.0", "result": ["x"], "id": "three"},
    ]


def test_notifications_only_get_no_content(daemon: JSONRPCServer) -> None:
    for body in (
        {"jsonrpc": "2.0", "method": "echo", "params": [1]},
        [{"jsonrpc": "2.0", "method": "nope"}, {"jsonrpc": "2.0", "method": "add"}],
    ):
        status, response, data = request(daemon, body, auth=basic())
        assert status == 204
        assert data == b""
        assert response.getheader("Content-Length") is None


def test_json_rpc_1_0_style(daemon: JSONRPCServer) -> None:
    assert rpc(daemon, {"method": "add", "params": [1, 2], "id": 7}) == {
        "result": 3,
        "error": None,
        "id": 7,
    }
    assert rpc(daemon, {"method": "nope", "params": [], "id": "a"}) == {
        "result": None,
        "error": {"code": -32601, "message": "method not found: 'nope'"},
        "id": "a",
    }
    # bitcoin-cli style: id and params may be null; the call is answered.
    assert rpc(daemon, {"method": "getinfo", "params": None, "id": None})["result"] == {
        "version": __version__,
        "server": "jsonrpcd",
    }


# -- HTTP --------------------------------------------------------------------------


def test_keep_alive_two_requests_on_one_connection(daemon: JSONRPCServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(daemon), timeout=TIMEOUT)
    headers = {"Authorization": basic()}
    conn.request("POST", "/", body=b'{"jsonrpc":"2.0","method":"add","params":[1],"id":1}',
                 headers=headers)  # fmt: skip
    first = conn.getresponse()
    assert json.loads(first.read())["result"] == 1
    assert first.getheader("Connection") is None
    sock = conn.sock
    assert sock is not None
    conn.request("POST", "/", body=b'{"jsonrpc":"2.0","method":"add","params":[2],"id":2}',
                 headers=headers)  # fmt: skip
    second = conn.getresponse()
    assert json.loads(second.read())["result"] == 2
    assert conn.sock is sock
    conn.close()


def test_pipelined_requests(daemon: JSONRPCServer) -> None:
    body = b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}'
    one = (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    last = one.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    answer = raw(daemon, one + one + last)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.count(b'"result":[1]') == 3


def test_connection_close_and_http_1_0_close(daemon: JSONRPCServer) -> None:
    body = b'{"method":"getinfo","id":1}'
    for version, extra in (("HTTP/1.1", "Connection: close\r\n"), ("HTTP/1.0", "")):
        head = (
            f"POST / {version}\r\nAuthorization: {basic()}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        answer = raw(daemon, head + body)  # returns at EOF: the daemon closed
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nConnection: close\r\n" in answer


def test_413_for_a_body_over_1_mib(daemon: JSONRPCServer) -> None:
    answer = raw(daemon, auth_head(1024 * 1024 + 1) + b"[" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert b"\r\nConnection: close" in answer
    huge = raw(daemon, auth_head(10**30))
    assert huge.startswith(b"HTTP/1.1 413 ")


def test_a_body_of_exactly_1_mib_is_read(daemon: JSONRPCServer) -> None:
    body = b'{"jsonrpc":"2.0","method":"echo","id":1,"params":["'
    body += b"x" * (1024 * 1024 - len(body) - 3) + b'"]}'
    assert len(body) == 1024 * 1024
    status, _, data = request(daemon, auth=basic(), raw_body=body)
    assert status == 200
    assert len(json.loads(data)["result"][0]) > 1_000_000


def test_oversized_body_without_credentials_is_401(daemon: JSONRPCServer) -> None:
    answer = raw(daemon, b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_431_for_a_head_over_16_kib(daemon: JSONRPCServer) -> None:
    big = b"POST / HTTP/1.1\r\nX-Filler: " + b"a" * (17 * 1024) + b"\r\n\r\n"
    answer = raw(daemon, big)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    many = b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n"
    assert raw(daemon, many).startswith(b"HTTP/1.1 431 ")


def test_get_with_credentials_is_405(daemon: JSONRPCServer) -> None:
    status, response, body = request(daemon, method="GET", auth=basic())
    assert status == 405
    assert response.getheader("Allow") == "POST"
    assert b"POSTed" in body
    assert_401(*request(daemon, method="GET"))
    status, response, body = request(daemon, method="HEAD", auth=basic())
    assert (status, body) == (405, b"")


def test_other_refusals_with_credentials(daemon: JSONRPCServer) -> None:
    status, _, _ = request(daemon, {"method": "getinfo", "id": 1}, path="/wallet", auth=basic())
    assert status == 404
    no_length = f"POST / HTTP/1.1\r\nAuthorization: {basic()}\r\n\r\n".encode()
    assert raw(daemon, no_length).startswith(b"HTTP/1.1 411 Length Required\r\n")
    chunked = (
        f"POST / HTTP/1.1\r\nAuthorization: {basic()}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\n\r\n"
    ).encode()
    assert raw(daemon, chunked).startswith(b"HTTP/1.1 501 Not Implemented\r\n")
    bad_length = f"POST / HTTP/1.1\r\nAuthorization: {basic()}\r\nContent-Length: 1x\r\n\r\n"
    assert raw(daemon, bad_length.encode()).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_expect_100_continue(daemon: JSONRPCServer) -> None:
    body = b'{"jsonrpc":"2.0","method":"getinfo","id":1}'
    with socket.create_connection(("127.0.0.1", port_of(daemon)), timeout=TIMEOUT) as sock:
        sock.sendall(auth_head(len(body), extra="Expect: 100-continue\r\n"))
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(body)
        assert reader.readline() == b"HTTP/1.1 200 OK\r\n"
        reader.close()
    # Without credentials there is no 100: the body is not wanted.
    head = f"POST / HTTP/1.1\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    assert raw(daemon, head.encode()).startswith(b"HTTP/1.1 401 ")


def test_one_log_line_per_request(daemon: JSONRPCServer, log: io.StringIO) -> None:
    rpc(daemon, {"jsonrpc": "2.0", "method": "help", "id": 1})
    request(daemon, {"jsonrpc": "2.0", "method": "getinfo", "id": 1})
    raw(daemon, b"\r\n\r\n")
    rpc(daemon, {"jsonrpc": "2.0", "method": "bad method\nname", "id": 1})
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"jsonrpcd: 127\.0\.0\.1:\d+ POST / help 200", lines[-4])
    assert re.fullmatch(r"jsonrpcd: 127\.0\.0\.1:\d+ POST / - 401", lines[-3])
    assert re.fullmatch(r"jsonrpcd: 127\.0\.0\.1:\d+ - - \(malformed\) 401", lines[-2])
    assert re.fullmatch(r"jsonrpcd: 127\.0\.0\.1:\d+ POST / 'bad method\\nname' 200", lines[-1])


def test_close_ends_open_connections() -> None:
    server = serve(("127.0.0.1", 0), USER, PASSWORD)
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT) as sock:
        sock.sendall(b"P")  # half a request: its thread waits for the rest
        server.close()
        # Closed, with or without a reset (the "P" may still be unread).
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT)


def test_shutdown_and_server_close_separately() -> None:
    server = serve(("127.0.0.1", 0), USER, PASSWORD)
    server.shutdown()
    server.server_close()
    server.close()  # again: harmless


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = serve(("::1", 0), USER, PASSWORD)
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    with server:
        conn = http.client.HTTPConnection("::1", port_of(server), timeout=TIMEOUT)
        conn.request("POST", "/", body=b'{"method":"getinfo","id":1}',
                     headers={"Authorization": basic()})  # fmt: skip
        assert conn.getresponse().status == 200
        conn.close()


@pytest.mark.parametrize(
    ("user", "password", "words"),
    [("", "pw", "user"), ("a:b", "pw", "':'"), ("alice", "", "password is empty")],
)
def test_serve_checks_the_credentials(user: str, password: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        serve(("127.0.0.1", 0), user, password)


# -- the command line --------------------------------------------------------------


def test_not_a_securepair_subcommand() -> None:
    assert "jsonrpcd" not in COMMANDS
    assert "jsonrpcd" not in COMMANDS.values()


def start(args: list[str], *, script: bool = False) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = (
        [sys.executable, str(ROOT / "examples" / "jsonrpc_daemon.py")]
        if script
        else [sys.executable, "-m", "securepair.cli.jsonrpcd"]
    )
    proc = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        proc.wait(TIMEOUT)
        assert proc.stderr is not None
        pytest.fail(f"jsonrpcd did not start: {proc.stderr.read()}")
    return proc, first


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err


def call_port(port: int, user: str, password: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", "/", body=b'{"jsonrpc":"2.0","method":"getinfo","id":1}',
                 headers={"Authorization": basic(user, password)})  # fmt: skip
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200, data
    return json.loads(data)["result"]


def test_subprocess_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "rpc.toml"
    config.write_text(f'user = "{USER}"\npassword = "{PASSWORD}"\nlisten = "127.0.0.1:1"\n')
    proc, first = start(["--listen", "127.0.0.1:0", "--config", str(config)])
    found = re.fullmatch(r"jsonrpcd listening on 127\.0\.0\.1:(\d+)\n", first)
    assert found, first
    port = int(found.group(1))
    assert port not in (0, 1)
    assert call_port(port, USER, PASSWORD) == {"version": __version__, "server": "jsonrpcd"}
    code, err = stop(proc)
    assert code == 0
    assert re.search(r"^jsonrpcd: 127\.0\.0\.1:\d+ POST / getinfo 200$", err, re.M), err


def test_the_example_symlink_runs_as_a_script(tmp_path: Path) -> None:
    link = ROOT / "examples" / "jsonrpc_daemon.py"
    assert link.is_symlink()
    assert os.readlink(link) == "../securepair/cli/jsonrpcd.py"
    assert link.resolve() == Path(jsonrpcd.__file__).resolve()
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    proc, first = start(
        ["--listen", "127.0.0.1:0", "--user", "bob", "--password-file", str(secret), "--quiet"],
        script=True,
    )
    port = int(first.rpartition(":")[2])
    assert call_port(port, "bob", "s3cret")["version"] == __version__
    code, err = stop(proc)
    assert (code, err) == (0, "")


def test_config_error_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "securepair.cli.jsonrpcd", "--config", str(tmp_path / "no.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"jsonrpcd: error: config file {tmp_path / 'no.toml'}: not found\n"


@pytest.mark.parametrize(
    ("config", "args", "words"),
    [
        (None, [], 'no user: give --user, or --config FILE with user = "..."'),
        (None, ["--user", "a"], "no password: give --password-file, or --config FILE"),
        ('password = "x"\n', [], ", or give --user"),
        ('user = "alice"\n', [], ", or give --password-file"),
        ('user = "alice"\npasword = "x"\n', [], "unknown setting 'pasword'"),
        ('user = "alice"\npassword = 5\n', [], "password must be a string"),
        ('user = "alice\n', [], "not valid TOML"),
        ('user = "a:b"\npassword = "x"\n', [], "cannot contain ':'"),
        ('user = "a"\npassword = "x"\nlisten = "8332"\n', [], "listen '8332': expected HOST:PORT"),
        ('user = "a"\npassword = "x"\n', ["--listen", "::1:80"], "expected HOST:PORT"),
        ('user = "a"\npassword = "x"\n', ["--listen", "h:99999"], "expected HOST:PORT"),
        ('user = "a"\n', ["--password-file", "/nonexistent/pw"], "--password-file /nonexistent"),
    ],
)
def test_config_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str | None,
    args: list[str],
    words: str,
) -> None:
    argv = list(args)
    if config is not None:
        path = tmp_path / "rpc.toml"
        path.write_text(config)
        argv += ["--config", str(path)]
    assert jsonrpcd.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("jsonrpcd: error: ")
    assert words in err
    assert err.count("\n") == 1


def test_empty_password_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "pw"
    secret.write_text("\n")
    assert jsonrpcd.main(["--user", "a", "--password-file", str(secret)]) == 2
    assert capsys.readouterr().err == f"jsonrpcd: error: --password-file {secret}: empty\n"


def test_listen_address_in_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    with serve(("127.0.0.1", 0), USER, PASSWORD) as server:
        argv = ["--user", "a", "--password-file", str(secret)]
        taken = f"127.0.0.1:{port_of(server)}"
        assert jsonrpcd.main([*argv, "--listen", taken]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"jsonrpcd: error: cannot listen on {taken}: ")
    assert err.count("\n") == 1
