# Invariant: for any bytes, in any buffer type, parse_proxy_header() returns
# None (more bytes needed), a ProxyHeader, or raises ProxyProtocolError, and
# nothing else; a header never claims more bytes than it was given, nor more
# than MAX_HEADER_LENGTH (107 for v1); the same bytes cut at its length
# parse to the same header, and whatever follows the header changes nothing;
# looks_like_proxy_header() agrees (True for a header, False only for
# bytes that cannot start one); fed a byte at a time (as a socket delivers
# them), the answer is None until it is decided, and once decided it never
# changes; a header's addresses, given to build_v1()/build_v2(), parse back
# to the same addresses; and the error's first_bytes are what was sent.
"""Fuzzer of ``securepair.server.proxy_protocol``: the PROXY header that a
load balancer (or an attacker who skipped it) puts before the ClientHello.

Run with ``fuzz/run proxy``, or by hand:
``python fuzz/fuzz_proxy.py fuzz/corpus/proxy -max_total_time=60``.
"""

from __future__ import annotations

import sys

import atheris
import harness_support as hs

with atheris.instrument_imports(include=["securepair"]):
    from securepair.server.proxy_protocol import (
        MAX_HEADER_LENGTH,
        V1_MAX_LENGTH,
        ProxyHeader,
        ProxyProtocolError,
        build_v1,
        build_v2,
        looks_like_proxy_header,
        parse_proxy_header,
    )

#: What a socket would deliver after a header: a TLS ClientHello's start.
TAIL = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def encode_input(payload: bytes, *, kind: int = 0) -> bytes:
    """The input that makes :func:`test_one_input` parse ``payload`` (seeds)."""
    return payload + hs.encode_int_options([(0, hs.BUFFER_KINDS - 1, kind)])


def _parse(data: bytes) -> ProxyHeader | ProxyProtocolError | None:
    try:
        return parse_proxy_header(data)
    except ProxyProtocolError as exc:  # documented: not a valid header
        return exc


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, hs.BUFFER_KINDS - 1)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())

    result = _parse(hs.as_buffer(payload, kind))  # type: ignore[arg-type]
    same = _parse(payload)
    assert type(result) is type(same), (result, same)
    looks = looks_like_proxy_header(payload)

    if isinstance(result, ProxyProtocolError):
        assert result.first_bytes == payload[: len(result.first_bytes)], result
        assert 0 < len(result.first_bytes) <= 32, result
        assert str(result).isprintable(), str(result)
        # More bytes never rescue bytes that are wrong already.
        assert isinstance(_parse(payload + TAIL), ProxyProtocolError)
    elif result is None:
        assert looks is not False, payload
        assert len(payload) < MAX_HEADER_LENGTH, len(payload)
    else:
        assert looks is True, payload
        assert 0 < result.length <= min(len(payload), MAX_HEADER_LENGTH), result
        if result.version == 1:
            assert result.length <= V1_MAX_LENGTH, result
        head = payload[: result.length]
        assert _parse(head) == result, (head, result)
        assert _parse(head + TAIL) == result
        if result.source is not None and result.family in ("TCP4", "TCP6"):
            assert result.destination is not None
            for built in (
                build_v1(result.source, result.destination),
                build_v2(result.source, result.destination),
            ):
                again = _parse(built)
                assert isinstance(again, ProxyHeader), (built, again)
                assert (again.source, again.destination) == (result.source, result.destination)

    # A byte at a time: None until decided, then the same answer for every
    # longer prefix.
    decided: ProxyHeader | ProxyProtocolError | None = None
    for n in range(1, min(len(payload), MAX_HEADER_LENGTH) + 1):
        step = _parse(payload[:n])
        if decided is None:
            decided = step
        elif isinstance(decided, ProxyHeader):
            assert step == decided, (n, step, decided)
        else:
            assert isinstance(step, ProxyProtocolError), (n, step)
    if decided is not None and len(payload) <= MAX_HEADER_LENGTH:
        assert type(decided) is type(result), (decided, result)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
