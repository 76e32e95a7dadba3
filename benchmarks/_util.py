"""Shared helpers for the benchmarks: certificates, timing, the ratio table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One measurement: a name, ops (or bytes) per second for each contender."""

    name: str
    unit: str
    ours: float
    anchor: float
    anchor_name: str
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.ours / self.anchor if self.anchor else float("nan")


def alternate(contenders: dict[str, Callable[[], float]], rounds: int = 5) -> dict[str, float]:
    """Run each contender ``rounds`` times, alternating, and return the median
    rate of each.  A contender returns the amount of work it did; the time
    is process CPU time, so the other core's load does not leak in."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up round, not counted
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.process_time()
            work = run()
            elapsed = time.process_time() - start
            rates[name].append(work / elapsed if elapsed > 0 else float("inf"))
    return {name: statistics.median(values) for name, values in rates.items()}


def print_table(results: list[Result]) -> None:
    """Print results as a table with ratios and targets."""
    print(f"{'benchmark':<34} {'ours':>14} {'anchor':>14}  {'ratio':>6}  target  anchor")
    for r in results:
        target = f">={r.target:.2f}" if r.target is not None else ""
        flag = ""
        if r.target is not None:
            flag = " ok" if r.ratio >= r.target else " MISSED"
        print(
            f"{r.name:<34} {r.ours:>10.1f} {r.unit:<3} {r.anchor:>10.1f} {r.unit:<3}"
            f" {r.ratio:>6.2f}  {target:<6}{flag}  {r.anchor_name}"
        )
