# Invariant: for any bytes, in any buffer type, the C and the Python
# ClientHello parser return equal ClientHellos, NeedData with equal lower
# bounds, or the same error (type, code, message, and offset and value for a
# record error).  The answer does not depend on how the bytes arrive: a
# driver fed byte by byte or in pieces, asking again once NeedData.needed
# more bytes have come, reaches the answer the whole input gives, and never
# past ClientHello.end (needed is a true lower bound).  Bytes after the
# ClientHello's last record change nothing, and a ClientHello is
# self-consistent (32-byte random, a session id of at most 32 bytes, ASCII
# server name, is_tls13 as supported_versions says).
"""Differential fuzzer of ``securepair.records.parse_client_hello``.

Run with ``fuzz/run client_hello``, or by hand:
``python fuzz/fuzz_client_hello.py fuzz/corpus/client_hello -max_total_time=60``.
"""

from __future__ import annotations

import sys

import atheris
import harness_support as hs

hs.use_instrumented_cframer()

with atheris.instrument_imports(include=["securepair"]):
    from securepair.errors import ClientHelloError, RecordError
    from securepair.records import ClientHello, NeedData
    from securepair.records import c as c_framer
    from securepair.records import python as py_framer

Outcome = tuple[object, ...]


def outcome(parse: object, buf: object) -> Outcome:
    try:
        result = parse(buf)  # type: ignore[operator]
    except RecordError as e:
        # Documented: a bad record header before or among the ClientHello's
        # records.
        return ("record_error", type(e), str(e), e.code, e.offset, e.value)
    except ClientHelloError as e:
        # Documented: the records are fine but the message is not a
        # well-formed ClientHello.
        return ("hello_error", type(e), str(e), e.code)
    if isinstance(result, NeedData):
        assert result.needed >= 1, result
        return ("need", result.needed)
    assert isinstance(result, ClientHello), result
    return ("hello", result)


def check_hello(data: bytes, hello: ClientHello) -> None:
    assert 0 < hello.end <= len(data), hello
    assert len(hello.random) == 32 and len(hello.session_id) <= 32, hello
    assert hello.is_tls13 == (0x0304 in hello.supported_versions)
    assert hello.compression_methods, hello
    if hello.server_name is not None:
        assert hello.server_name.isascii() and hello.server_name, hello
    assert len(set(hello.extensions)) == len(hello.extensions), hello
    assert hello.record_version >> 8 == 3 and data[0] == 22, hello


def drive(parse: object, data: bytes, mode: int, seed: int, whole: Outcome) -> None:
    """Feed ``data`` in pieces, asking only when NeedData's promise is met
    (the way a server that peeks at the ClientHello should wait)."""
    buf = bytearray()
    promised = 1
    for piece in hs.chunks(data, mode, seed):
        buf += piece
        if len(buf) < promised:
            continue
        got = outcome(parse, bytes(buf))
        if got[0] == "need":
            needed = got[1]
            assert isinstance(needed, int)
            promised = len(buf) + needed
            if whole[0] == "hello":
                hello = whole[1]
                assert isinstance(hello, ClientHello)
                # A lower bound never points past the end of the message.
                assert promised <= hello.end, (len(buf), needed, hello.end)
            continue
        # The first answer that is not NeedData is the whole input's answer.
        assert got == whole, (mode, len(buf), got, whole)
        if got[0] == "hello":
            hello = got[1]
            assert isinstance(hello, ClientHello)
            assert hello.end <= len(buf)
        return
    # Never answered: the lower bound held the driver back, which it may
    # do for NeedData or an error (a bad header can show before the
    # promised bytes come), never for a complete ClientHello.
    assert whole[0] != "hello", whole


def encode_input(
    payload: bytes, *, kind: int = 0, mode: int = 0, seed: int = 0, junk: int = 0
) -> bytes:
    """The input that makes :func:`test_one_input` parse ``payload`` with
    these options (for seeds)."""
    return payload + hs.encode_int_options(
        [(0, hs.BUFFER_KINDS - 1, kind), (0, 2, mode), (0, 255, seed), (0, 255, junk)]
    )


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, hs.BUFFER_KINDS - 1)
    mode = fdp.ConsumeIntInRange(0, 2)
    seed = fdp.ConsumeIntInRange(0, 255)
    junk = fdp.ConsumeIntInRange(0, 255)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())

    expected = outcome(py_framer.parse_client_hello, payload)
    for impl in (c_framer, py_framer):
        got = outcome(impl.parse_client_hello, hs.as_buffer(payload, kind))
        assert got == expected, (impl.IMPLEMENTATION, kind, got, expected)

    if expected[0] == "hello":
        hello = expected[1]
        assert isinstance(hello, ClientHello)
        check_hello(payload, hello)
        # Only the ClientHello's own records are read: cut there, or
        # followed by anything, the answer is the same.
        trailer = bytes([junk]) * (1 + junk % 7)
        for impl in (c_framer, py_framer):
            for variant in (payload[: hello.end], payload + trailer):
                got = outcome(impl.parse_client_hello, variant)
                assert got == expected, (impl.IMPLEMENTATION, len(variant), got, expected)

    if mode and payload:
        if mode == 1 and len(payload) > 512:
            mode = 2  # a parse per byte: long inputs go in pieces
        for impl in (c_framer, py_framer):
            drive(impl.parse_client_hello, payload, mode, seed, expected)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
