"""The record framer: the C implementation against its Python twin, in one process.

Workloads, each run alternately with both framers (median of five rounds of
process CPU time, see benchmarks/_util.py):

(a) one ``scan()`` of a buffer of 1,000 records of 16 KiB: per-record work
    is small next to the bytes, both framers only read headers;
(b) one ``scan()`` of a buffer of 100,000 records of 32 bytes: per-record
    work is everything (target: C at least 10x the twin);
(c) ``scan()`` of one 16 KiB record per call: what a socket read looks like,
    where the per-call overhead of either framer is what is left;
(d) ``parse_client_hello()`` of a typical TLS 1.3 ClientHello, in one record
    and in records of 100 bytes.

    python benchmarks/bench_records.py [--quick]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    # Run as a script: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import Result, alternate, plan, print_table, skip
from securepair.records import python as py_framer

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

#: CPU time each contender should spend per round, so that a run of a few
#: microseconds is repeated until the clock can measure it.
ROUND_SECONDS = 0.1


def record(payload: bytes, content_type: int = 23, version: int = 0x0303) -> bytes:
    """One TLS record."""
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def client_hello(fragment: int = 2**14) -> bytes:
    """A ClientHello shaped like a browser's, in records of ``fragment`` bytes."""

    def ext(etype: int, data: bytes) -> bytes:
        return struct.pack("!HH", etype, len(data)) + data

    def vec16(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    host = b"www.example.com"
    alpn = b"\x02h2\x08http/1.1"
    extensions = b"".join(
        [
            ext(0, vec16(b"\x00" + vec16(host))),
            ext(23, b""),
            ext(65281, b"\x00"),
            ext(10, vec16(struct.pack("!4H", 0x11EC, 0x001D, 0x0017, 0x0018))),
            ext(11, b"\x01\x00"),
            ext(35, b""),
            ext(16, vec16(alpn)),
            ext(5, b"\x01\x00\x00\x00\x00"),
            ext(
                13,
                vec16(
                    struct.pack(
                        "!8H", 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601
                    )
                ),
            ),
            ext(18, b""),
            ext(51, vec16(struct.pack("!HH", 0x001D, 32) + bytes(32))),
            ext(45, b"\x01\x01"),
            ext(43, b"\x06\x03\x04\x03\x03\x03\x02"),
            ext(27, b"\x02\x00\x02"),
            ext(21, bytes(180)),
        ]
    )
    suites = struct.pack(
        "!15H",
        0x1301,
        0x1302,
        0x1303,
        0xC02B,
        0xC02F,
        0xC02C,
        0xC030,
        0xCCA9,
        0xCCA8,
        0xC013,
        0xC014,
        0x009C,
        0x009D,
        0x002F,
        0x0035,
    )
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + vec16(suites) + b"\x01\x00"
    body += vec16(extensions)
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"".join(
        record(message[i : i + fragment], 22, 0x0301) for i in range(0, len(message), fragment)
    )


def _repeating(work: Callable[[], int]) -> Callable[[], float]:
    """``work`` repeated enough times to fill ROUND_SECONDS; returns units done."""
    start = time.process_time()
    work()
    once = max(time.process_time() - start, 1e-7)
    loops = max(1, int(ROUND_SECONDS / once))

    def run() -> float:
        total = 0
        for _ in range(loops):
            total += work()
        return float(total)

    return run


def _scan_work(framer: ModuleType, buf: bytes, expect: int) -> Callable[[], int]:
    def work() -> int:
        found = len(framer.scan(buf).records)
        assert found == expect
        return found

    return work


def _hello_work(framer: ModuleType, buf: bytes) -> Callable[[], int]:
    parse = framer.parse_client_hello

    def work() -> int:
        assert parse(buf).server_name == "www.example.com"
        return 1

    return work


def _compare(
    name: str,
    unit: str,
    scale: float,
    framers: dict[str, ModuleType],
    make: Callable[[ModuleType], Callable[[], int]],
    rounds: int,
    target: float | None = None,
) -> Result:
    rates = alternate(
        {key: _repeating(make(mod)) for key, mod in framers.items()}, rounds, label=name
    )
    c_rate = rates.get("c", float("nan"))
    py_rate = rates["python"]
    print(
        f"  {name:<34} C {c_rate / scale:>10.3f} {unit}   Python {py_rate / scale:>10.3f} {unit}"
        f"   C/Python {c_rate / py_rate:>6.1f}x"
    )
    return Result(name, unit, c_rate / scale, py_rate / scale, "python twin", target)


def main(argv: list[str] | None = None) -> list[Result]:
    """Run the framer benchmarks, print the table, return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of five")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else 5

    framers: dict[str, ModuleType] = {"python": py_framer}
    try:
        from securepair.records import c as c_framer
    except ImportError as exc:
        skip("record framer", f"the C framer is not built ({exc}); build it with pip install -e .")
        return []
    framers["c"] = c_framer

    big = record(bytes(16384)) * 1000
    small = record(bytes(27)) * 100_000
    one = record(bytes(16384))
    hello = client_hello()
    hello_fragmented = client_hello(100)
    pieces = len(py_framer.scan(hello_fragmented).records)

    plan(5)
    print("record framer: C vs the Python twin (records/s in millions, parses/s in thousands)")
    results = [
        _compare(
            "(a) 1,000 x 16 KiB records",
            "Mr/s",
            1e6,
            framers,
            lambda m: _scan_work(m, big, 1000),
            rounds,
        ),
        _compare(
            "(b) 100,000 x 32 B records",
            "Mr/s",
            1e6,
            framers,
            lambda m: _scan_work(m, small, 100_000),
            rounds,
            target=10.0,
        ),
        _compare(
            "(c) 1 x 16 KiB record per call",
            "Mr/s",
            1e6,
            framers,
            lambda m: _scan_work(m, one, 1),
            rounds,
        ),
        _compare(
            "(d) ClientHello, 1 record",
            "k/s",
            1e3,
            framers,
            lambda m: _hello_work(m, hello),
            rounds,
        ),
        _compare(
            f"(d) ClientHello, {pieces} records",
            "k/s",
            1e3,
            framers,
            lambda m: _hello_work(m, hello_fragmented),
            rounds,
        ),
    ]
    print()
    print_table(results)
    return results


if __name__ == "__main__":
    main()
