# Invariant: for any bytes, in any buffer type, and any length limit, the C
# record scanner and its Python twin find the same records, or raise the same
# RecordError (type, code, message, offset, value).  Each result is
# self-consistent (the records tile the consumed bytes, every header is
# valid, partial and needed add up, an error sits on a record boundary), and
# it does not depend on how the bytes arrived: scanning a stream fed whole,
# byte by byte or in random pieces, cutting at each record boundary as the
# engine does, gives the same records and the same error at the same
# absolute offset.
"""Differential fuzzer of ``securepair.records.scan`` (C against Python).

Run with ``fuzz/run scan`` (which builds the C framer with ASan and
libFuzzer coverage and preloads atheris's sanitizer runtime), or by hand:
``python fuzz/fuzz_scan.py fuzz/corpus/scan -max_total_time=60``.
"""

from __future__ import annotations

import sys

import atheris
import harness_support as hs

hs.use_instrumented_cframer()

with atheris.instrument_imports(include=["securepair"]):
    from securepair.errors import RecordError
    from securepair.records import (
        HEADER_LENGTH,
        MAX_TLS12_CIPHERTEXT,
        MAX_TLS13_CIPHERTEXT,
        ScanResult,
    )
    from securepair.records import c as c_framer
    from securepair.records import python as py_framer

#: Limits a caller passes: the two RFC maxima, the plaintext maximum, tiny
#: and degenerate ones, and values outside the 16-bit length field's range
#: (the C clamps them; the Python compares them as they are).
LIMITS = (MAX_TLS12_CIPHERTEXT, MAX_TLS13_CIPHERTEXT, 2**14, 0, 1, 100, 2**16, -1, 10**20)

Outcome = tuple[object, ...]


def outcome(scan: object, buf: object, max_length: int) -> Outcome:
    try:
        result = scan(buf, max_length)  # type: ignore[operator]
    except RecordError as e:
        # Documented: a bad record header, including that of a trailing
        # partial record.  Compared attribute by attribute.
        return ("error", type(e), str(e), e.code, e.offset, e.value)
    assert isinstance(result, ScanResult), result
    return ("ok", list(result.records), result.consumed, result.partial, result.needed)


def check_consistent(data: bytes, max_length: int, found: Outcome) -> None:
    """The Python answer agrees with the definition of a record stream."""
    if found[0] == "error":
        offset = found[4]
        assert isinstance(offset, int)
        assert 0 <= offset <= len(data) - HEADER_LENGTH, found
        # Everything before the bad header scans cleanly and ends there.
        before = py_framer.scan(data[:offset], max_length)
        assert before.consumed == offset and before.partial == 0, (before, found)
        return
    _, records, consumed, partial, needed = found
    assert isinstance(records, list)
    pos = 0
    for rec in records:
        assert rec.offset == pos, (rec, pos)
        assert 20 <= rec.content_type <= 24 and rec.version >> 8 == 3, rec
        assert rec.length <= max_length and (rec.length > 0 or rec.content_type > 22), rec
        pos = rec.end
    assert consumed == pos and partial == len(data) - pos, found
    if partial == 0:
        assert needed == 0, found
    elif partial < HEADER_LENGTH:
        assert needed == HEADER_LENGTH - partial, found
    else:
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        assert needed == HEADER_LENGTH + length - partial > 0, found


def stream(scan: object, data: bytes, mode: int, seed: int, max_length: int) -> Outcome:
    """Scan ``data`` as it arrives in pieces, keeping only the unconsumed
    tail, and report in whole-buffer terms."""
    buf = bytearray()
    base = 0
    records: list[object] = []
    result: ScanResult | None = None
    for piece in hs.chunks(data, mode, seed):
        buf += piece
        try:
            result = scan(buf, max_length)  # type: ignore[operator]
        except RecordError as e:
            # Documented, as above; the offset is relative to this buffer.
            # The records before it are valid; a handler may drop them from
            # its buffer right here (the scan must not still hold it).
            del buf[: e.offset]
            return ("error", type(e), None, e.code, base + e.offset, e.value)
        assert isinstance(result, ScanResult)
        for rec in result.records:
            records.append(rec._replace(offset=base + rec.offset))
        # The scan must have let go of the buffer: resizing a bytearray
        # that is still exported raises BufferError (a finding).
        del buf[: result.consumed]
        base += result.consumed
    partial = len(buf)
    needed = result.needed if result is not None and partial else 0
    return ("ok", records, base, partial, needed)


def encode_input(
    payload: bytes, *, limit: int = 0, kind: int = 0, mode: int = 0, seed: int = 0
) -> bytes:
    """The input that makes :func:`test_one_input` scan ``payload`` with
    ``LIMITS[limit]``, buffer ``kind`` and chunking ``mode`` (for seeds)."""
    return payload + hs.encode_int_options(
        [(0, len(LIMITS), limit), (0, hs.BUFFER_KINDS - 1, kind), (0, 2, mode), (0, 255, seed)]
    )


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(LIMITS))
    max_length = LIMITS[which] if which < len(LIMITS) else fdp.ConsumeIntInRange(-2, 70000)
    kind = fdp.ConsumeIntInRange(0, hs.BUFFER_KINDS - 1)
    mode = fdp.ConsumeIntInRange(0, 2)
    seed = fdp.ConsumeIntInRange(0, 255)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())

    expected = outcome(py_framer.scan, payload, max_length)
    check_consistent(payload, max_length, expected)
    for impl in (c_framer, py_framer):
        got = outcome(impl.scan, hs.as_buffer(payload, kind), max_length)
        assert got == expected, (impl.IMPLEMENTATION, kind, got, expected)

    if mode == 1 and len(payload) > 256:
        mode = 2  # byte by byte costs a scan per byte: long inputs go in pieces
    if mode:
        # In pieces: the same records, the same error at the same place
        # (the message names a relative offset, so it is left out).
        whole = expected if expected[0] == "ok" else (*expected[:2], None, *expected[3:])
        for impl in (c_framer, py_framer):
            got = stream(impl.scan, payload, mode, seed, max_length)
            if got[0] == "error" and whole[0] == "error":
                assert got == whole, (impl.IMPLEMENTATION, mode, got, whole)
            elif whole[0] == "error":
                # Pieces end on record boundaries, so an error shows in one.
                raise AssertionError((impl.IMPLEMENTATION, mode, got, whole))
            else:
                assert got == whole, (impl.IMPLEMENTATION, mode, got, whole)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
