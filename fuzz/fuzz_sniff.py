# Invariant: for any first bytes of a stream, in any buffer type, sniff(),
# is_tls_start(), shown_bytes() and not_tls_error() never raise; sniff names
# one of the documented kinds and looks at no more than 64 bytes;
# not_tls_error() returns None exactly for "tls" and "empty", and otherwise
# a NotTLSError of the same kind whose first_bytes are the first 32 bytes
# and whose message shows them (escaped) as the user will see them.  Fed a
# byte at a time (as the engine sees a stream arrive), the verdict never
# goes back: once a prefix cannot start TLS, no longer one can.
"""Fuzzer of ``securepair.records.sniff`` and ``not_tls_error``: the code
that tells a user what a non-TLS peer sent.

Run with ``fuzz/run sniff``, or by hand:
``python fuzz/fuzz_sniff.py fuzz/corpus/sniff -max_total_time=60``.
"""

from __future__ import annotations

import sys

import atheris
import harness_support as hs

hs.use_instrumented_cframer()

with atheris.instrument_imports(include=["securepair"]):
    from securepair.errors import NotTLSError
    from securepair.records import is_tls_start, not_tls_error, shown_bytes, sniff

#: The kinds Sniff.kind documents.
KINDS = frozenset(
    {
        "tls", "sslv2", "proxy-v1", "proxy-v2", "http-request", "http-response", "ssh",
        "smtp", "imap", "pop3", "ftp", "pop3-or-ftp", "nntp", "xmpp", "postgres", "text",
        "unknown", "empty",
    }
)  # fmt: skip


def encode_input(payload: bytes, *, kind: int = 0) -> bytes:
    """The input that makes :func:`test_one_input` sniff ``payload`` (seeds)."""
    return payload + hs.encode_int_options([(0, hs.BUFFER_KINDS - 1, kind)])


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, hs.BUFFER_KINDS - 1)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    buf = hs.as_buffer(payload, kind)

    found = sniff(buf)
    assert found.kind in KINDS, found
    assert found == sniff(payload[:64]), (found, sniff(payload[:64]))
    assert (found.kind == "empty") == (not payload), found
    assert is_tls_start(buf) == (found.kind in ("tls", "empty")), found
    shown = shown_bytes(buf)
    assert payload.startswith(shown) and len(shown) <= 32, shown

    # A byte at a time: is_tls_start only ever turns from True to False.
    verdicts = [is_tls_start(payload[:n]) for n in range(min(len(payload), 64) + 1)]
    assert verdicts == sorted(verdicts, reverse=True), verdicts
    assert verdicts[-1] == is_tls_start(buf)

    error = not_tls_error(buf)
    if found.kind in ("tls", "empty"):
        assert error is None, error
        return
    assert isinstance(error, NotTLSError), error
    assert error.kind == found.kind, (error.kind, found)
    assert error.first_bytes == payload[:32], error.first_bytes
    message = str(error)
    # The message ends with the bytes shown, a prefix of what was sent,
    # escaped by repr() so that control bytes cannot reach a terminal.
    assert any(message.endswith(": " + repr(payload[:n])) for n in range(1, 33)), message
    assert message.isprintable(), message


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
