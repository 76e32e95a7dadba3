"""Make the seed corpora from real handshakes, at build time.

Every seed comes from a connection run here and now between two in-memory
pairs (both backends, TLS 1.2 and 1.3, with ALPN, client certificates,
resumption and bulk data), with a CA made for the occasion: no key and no
certificate is ever committed.  The seeds go to ``fuzz/seeds/<target>/``
(not committed); ``fuzz/corpus/<target>/`` holds the minimized corpus the
long runs reached, which is committed, and ``fuzz/run`` uses both.

Usage: ``python fuzz/make_seeds.py [--out DIR] [target ...]``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import harness_support as hs  # noqa: E402

#: Seeds larger than this are cut: libFuzzer mutates small inputs faster,
#: and every record header that matters comes early.
MAX_SEED = 4096


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def refragment(hello_records: bytes, size: int) -> bytes:
    """The handshake bytes of ``hello_records`` re-cut into records of
    ``size`` bytes (the last one shorter), as a client may fragment."""
    body = b"".join(r[5:] for r in hs.split_records(hello_records))
    version = int.from_bytes(hello_records[1:3], "big")
    return b"".join(record(22, body[i : i + size], version) for i in range(0, len(body), size))


def transcripts() -> list[hs.Transcript]:
    ids = hs.Identities()
    return [t for b in hs.BACKENDS for v in hs.VERSIONS for t in hs.capture(ids, b, v)]


def client_hello_end(stream: bytes) -> int:
    from securepair.records import python as py_framer

    hello = py_framer.parse_client_hello(stream)
    assert not isinstance(hello, py_framer.NeedData), hello
    return hello.end


def seeds_scan(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_scan")
    for t in trs:
        for stream in (t.client_to_server, t.server_to_client):
            yield h.encode_input(stream[:MAX_SEED])
            yield h.encode_input(stream[:600], mode=1, kind=3)
            yield h.encode_input(stream[:MAX_SEED], mode=2, seed=7, limit=1)
    # A record of each type, and the empty ones TLS allows.
    for ct in range(20, 25):
        yield h.encode_input(record(ct, b"\x01") + record(23, b"") + record(24, b""))


def seeds_client_hello(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_client_hello")
    for t in trs:
        stream = t.client_to_server
        end = client_hello_end(stream)
        hello = stream[:end]
        yield h.encode_input(hello)
        yield h.encode_input(stream[: end + 64], mode=2, seed=3, junk=0x16)
        for size in (16, 100, 512):
            if size < len(hello) - 5:
                cut = refragment(hello, size)
                if len(cut) <= MAX_SEED:
                    yield h.encode_input(cut, mode=1 if size >= 100 else 2, kind=size % 6)


#: First bytes of the protocols a TLS port meets by mistake.
GREETINGS = (
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"HTTP/1.1 400 Bad Request\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"220 mail.example.com ESMTP Postfix\r\n",
    b"EHLO client.example.org\r\nSTARTTLS\r\n",
    b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
    b"a001 STARTTLS\r\n",
    b"+OK POP3 ready\r\nSTLS\r\n",
    b"220 ProFTPD Server (FTP)\r\nAUTH TLS\r\n",
    b"USER anonymous\r\n",
    b"200 news.example.com NNTP ready\r\n",
    b"<?xml version='1.0'?><stream:stream to='example.com'>",
    b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c",
    b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\x16\x02\x00",
    b"\r\n\r\nGET / HTTP/1.0\r\n",
    b"\xff\xfe\xfd",
)


def seeds_sniff(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_sniff")
    for i, greeting in enumerate(GREETINGS):
        yield h.encode_input(greeting, kind=i % 6)
    for t in trs[:2]:
        yield h.encode_input(t.client_to_server[:64])


def seeds_pair(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_pair")
    yield from h.seed_inputs(trs)


def seeds_starttls(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_starttls")
    hello = trs[0].client_to_server[: client_hello_end(trs[0].client_to_server)]
    yield from h.seed_inputs(hello)


def seeds_proxy(trs: list[hs.Transcript]) -> Iterable[bytes]:
    h = importlib.import_module("fuzz_proxy")
    from securepair.server.proxy_protocol import build_v1, build_v2

    hello = trs[0].client_to_server[:64]
    headers = [
        build_v1(("192.0.2.1", 56324), ("198.51.100.1", 443)),
        build_v1(("2001:db8::1", 56324), ("2001:db8::2", 443)),
        b"PROXY UNKNOWN\r\n",
        build_v2(("192.0.2.1", 56324), ("198.51.100.1", 443)),
        build_v2(("2001:db8::1", 56324), ("2001:db8::2", 443), tlvs=[(0x20, b"\x01\x00")]),
        build_v2(),  # LOCAL: a health check
    ]
    for i, header in enumerate(headers):
        yield h.encode_input(header + hello, kind=i % 6)
    yield h.encode_input(hello)


TARGETS: dict[str, Callable[[list[hs.Transcript]], Iterable[bytes]]] = {
    "scan": seeds_scan,
    "client_hello": seeds_client_hello,
    "sniff": seeds_sniff,
    "pair": seeds_pair,
    "starttls": seeds_starttls,
    "proxy": seeds_proxy,
}


def write(out: Path, blobs: Iterable[bytes]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for blob in blobs:
        name = hashlib.sha1(blob).hexdigest()
        (out / name).write_bytes(blob)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "seeds")
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    trs = transcripts()
    for target in args.targets:
        if target not in TARGETS:
            available = ", ".join(TARGETS)
            parser.error(f"no seeds for {target!r}; targets: {available}")
        count = write(args.out / target, TARGETS[target](trs))
        print(f"{target}: {count} seeds in {args.out / target}")


if __name__ == "__main__":
    main()
