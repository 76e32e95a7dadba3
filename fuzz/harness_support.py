"""What the harnesses share: loading the instrumented C framer, comparing
outcomes, cutting a stream into pieces, and encoding seed inputs.

This module is fuzzing infrastructure, not code under test: it imports
nothing from ``securepair`` at module level, so that the harnesses import
the package inside ``atheris.instrument_imports()`` themselves.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: Environment variable naming the ASan + libFuzzer build of the C framer
#: (``fuzz/build_cframer.py`` makes it; ``fuzz/run`` sets this).
CFRAMER_ENV = "SECUREPAIR_FUZZ_CFRAMER"


def use_instrumented_cframer() -> str | None:
    """Load the instrumented ``_cframer`` named by ``$SECUREPAIR_FUZZ_CFRAMER``
    as ``securepair.records._cframer``, before the package imports it.

    The in-place build next to the sources stays untouched: the module found
    in ``sys.modules`` wins over the file on disk.  Returns the path loaded,
    or None when the variable is unset (the ordinary build is used).
    """
    path = os.environ.get(CFRAMER_ENV)
    if not path:
        return None
    name = "securepair.records._cframer"
    if "securepair.records" in sys.modules:
        raise RuntimeError(f"{CFRAMER_ENV} must be honoured before securepair.records is imported")
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return path


def chunks(data: bytes, mode: int, seed: int) -> Iterator[bytes]:
    """``data`` cut the way ``mode`` says: 0 whole, 1 byte by byte, 2 pieces
    of 1-64 bytes from a seeded RNG (so a crash replays)."""
    if mode == 0:
        if data:
            yield data
        return
    if mode == 1:
        for i in range(len(data)):
            yield data[i : i + 1]
        return
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 64)
        yield data[pos : pos + size]
        pos += size


def as_buffer(data: bytes, kind: int) -> bytes | bytearray | memoryview:
    """``data`` as one of the buffer types the framers accept: bytes,
    bytearray, a memoryview, a view into the middle of a larger buffer, a
    strided view, or a view whose items are wider than a byte."""
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(data)
    if kind == 3:
        return memoryview(b"\xaa" + data + b"\xbb")[1:-1]
    if kind == 4:
        doubled = bytearray(b"\xcc" * (2 * len(data)))
        doubled[::2] = data
        return memoryview(bytes(doubled))[::2]
    if kind == 5 and len(data) % 4 == 0:
        return memoryview(bytearray(data)).cast("I")
    return data


#: How many buffer kinds :func:`as_buffer` knows.
BUFFER_KINDS = 6


def encode_int_options(values: Sequence[tuple[int, int, int]]) -> bytes:
    """The tail bytes that make ``FuzzedDataProvider.ConsumeIntInRange(lo, hi)``
    return each ``value``, for ``(lo, hi, value)`` in consumption order.

    atheris takes integers from the end of the input and byte strings from
    its front, so an input is ``payload + encode_int_options(...)``.  Only
    ranges of at most 256 values (one byte each) are supported; seeds are
    checked against the harness's own decoder anyway.
    """
    out = bytearray()
    for lo, hi, value in values:
        if hi - lo > 255 or not lo <= value <= hi:
            raise ValueError((lo, hi, value))
        if hi > lo:  # a range of one value consumes nothing
            out.insert(0, value - lo)
    return bytes(out)


def describe(fn: Callable[..., Any]) -> str:
    """``module.name`` of a function, for assertion messages."""
    return f"{fn.__module__}.{fn.__qualname__}"


# --------------------------------------------------------------------------
# Real handshakes, captured in memory (for seeds and for the pair harness).

#: The backends and protocol versions every capture is made with.
BACKENDS = ("stdlib", "pyopenssl")
VERSIONS = ("TLSv1.2", "TLSv1.3")
HOSTNAME = "example.com"


class Identities:
    """A CA, a server and a client certificate, made once per process (never
    written to disk, never committed)."""

    def __init__(self) -> None:
        from securepair.certgen import CertificateAuthority

        self.ca = CertificateAuthority("securepair fuzzing CA")
        self.server = self.ca.issue([HOSTNAME, "localhost"])
        self.client = self.ca.issue(["client.example.org"], client=True)


def configs(ids: Identities, backend: str, version: str, **extra: Any) -> tuple[Any, Any]:
    """(client config, server config) for one backend and version.

    ``extra`` keys starting with ``client_`` / ``server_`` go to that side.
    """
    from securepair import TLSConfig

    client: dict[str, Any] = {"backend": backend, "min_version": version, "max_version": version}
    server = dict(client)
    client.update(ca=ids.ca.cert_pem, servername=HOSTNAME)
    server.update(cert=ids.server.cert_pem, key=ids.server.key_pem)
    for key, value in extra.items():
        side, _, option = key.partition("_")
        (client if side == "client" else server)[option] = value
    return TLSConfig(**client), TLSConfig(**server)


class Transcript:
    """The bytes of one real connection, each direction as the wire saw it."""

    def __init__(self, name: str, backend: str, version: str, c2s: bytes, s2c: bytes) -> None:
        self.name = name
        self.backend = backend
        self.version = version
        #: Everything the client sent, and everything the server sent.
        self.client_to_server = c2s
        self.server_to_client = s2c

    def __repr__(self) -> str:
        return (
            f"<Transcript {self.name} {self.backend} {self.version} "
            f"c2s={len(self.client_to_server)} s2c={len(self.server_to_client)}>"
        )


#: Variations of a connection: (name, config options, application data).
VARIATIONS: tuple[tuple[str, dict[str, Any], bytes], ...] = (
    ("plain", {}, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    (
        "alpn",
        {"client_alpn_protocols": ["h2", "http/1.1"], "server_alpn_protocols": ["h2"]},
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ),
    (
        "client_cert",
        {
            "server_request_cert": True,
            "server_ca": None,  # filled in by capture()
            "client_cert": None,
            "client_key": None,
        },
        b"x" * 3000,
    ),
    ("bulk", {}, bytes(range(256)) * 80),
)


def capture(ids: Identities, backend: str, version: str) -> list[Transcript]:
    """Run each variation as a real in-memory connection (handshake, data
    both ways, close_notify both ways) and return what crossed the wire;
    also a resumed session (a ClientHello with a pre_shared_key or a
    session ticket)."""
    from securepair import SecurePair
    from securepair.testing.link import Link

    out = []
    session = None
    for name, options, data in VARIATIONS:
        opts = dict(options)
        if name == "client_cert":
            opts.update(
                server_ca=ids.ca.cert_pem,
                client_cert=ids.client.cert_pem,
                client_key=ids.client.key_pem,
            )
        client_config, server_config = configs(ids, backend, version, **opts)
        for resumed in (False, True) if name == "plain" else (False,):
            server = SecurePair(server_config, server_side=True)
            client = SecurePair(
                client_config, server_side=False, session=session if resumed else None
            )
            link = Link(client, server)
            link.handshake()
            client.cleartext.write(data)
            link.pump()
            assert server.cleartext.read() == data
            server.cleartext.write(data[::-1])
            link.pump()
            assert client.cleartext.read() == data[::-1]
            if not resumed:
                session = client.session
            client.close()
            link.pump()
            server.close()
            link.pump()
            label = f"{name}-resumed" if resumed else name
            out.append(
                Transcript(
                    label,
                    backend,
                    version,
                    bytes(link.client_to_server),
                    bytes(link.server_to_client),
                )
            )
    return out


def split_records(data: bytes) -> list[bytes]:
    """``data`` cut into its TLS records (a trailing partial one included)."""
    from securepair.records import python as py_framer

    found = py_framer.scan(data)
    pieces = [data[r.offset : r.end] for r in found.records]
    if found.partial:
        pieces.append(data[found.consumed :])
    return pieces
