"""Shared helpers for the benchmarks: timing, progress, skips, the ratio table.

A runner (``securepair bench``) follows a run through :data:`progress_hook`
instead of reading the output: each benchmark announces how many
comparisons it will make (:func:`plan`), and :func:`alternate` reports every
measurement.  A comparison that cannot run because a tool or library is
missing is recorded with :func:`skip` and the benchmark carries on; run
alone, a benchmark prints the same lines it always did.
"""

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


@dataclass(frozen=True)
class Progress:
    """Where a benchmark is, handed to :data:`progress_hook`."""

    step: int
    """The comparison under way, counting from 1."""
    steps: int
    """The comparisons the benchmark planned (never less than ``step``)."""
    label: str
    """What the comparison measures."""
    done: int
    """Measurements of this comparison finished so far (0 when it starts)."""
    total: int
    """Measurements this comparison makes, warm-up rounds included."""


#: Called at the start of each comparison and after each of its
#: measurements; ``None`` when nobody is watching.
progress_hook: Callable[[Progress], None] | None = None

#: ``(what, why)`` for each comparison that could not run, in order.
skips: list[tuple[str, str]] = []

#: Facts a reader needs next to the table (versions, negotiated ciphers).
notes: list[str] = []


@dataclass
class _Steps:
    planned: int = 0
    started: int = 0


_steps = _Steps()


def plan(steps: int) -> None:
    """Announce the number of steps (calls of :func:`alternate` or
    :func:`step`) the benchmark will make, so that a runner can draw a bar;
    counting restarts from the first."""
    _steps.planned, _steps.started = steps, 0


def skip(what: str, why: str) -> None:
    """Record (and print) a comparison that cannot run here, and why."""
    skips.append((what, why))
    print(f"skipped {what}: {why}")


def note(text: str) -> None:
    """Record (and print) a fact that belongs next to the results."""
    notes.append(text)
    print(text)


def step(label: str, total: int) -> Callable[[], None]:
    """Start the next comparison (``total`` measurements, described by
    ``label``) and return the function to call after each measurement."""
    _steps.started += 1
    number, done = _steps.started, 0

    def report() -> None:
        if progress_hook is not None:
            progress_hook(Progress(number, max(_steps.planned, number), label, done, total))

    def tick() -> None:
        nonlocal done
        done += 1
        report()

    report()
    return tick


def alternate(
    contenders: dict[str, Callable[[], float]],
    rounds: int = 5,
    *,
    label: str = "",
    clock: Callable[[], float] = time.process_time,
) -> dict[str, float]:
    """Run each contender ``rounds`` times, alternating, and return the median
    rate of each.  A contender returns the amount of work it did.  The
    default clock is process CPU time, so the other core's load does not
    leak in; contenders that do their work in other processes must pass a
    wall clock (``time.perf_counter``) instead.  This is one :func:`step`."""
    tick = step(label, (rounds + 1) * len(contenders))
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up round, not counted
        run()
        tick()
    for _ in range(rounds):
        for name, run in contenders.items():
            start = clock()
            work = run()
            elapsed = clock() - start
            rates[name].append(work / elapsed if elapsed > 0 else float("inf"))
            tick()
    return {name: statistics.median(values) for name, values in rates.items()}


def print_table(results: list[Result]) -> None:
    """Print results as one table: both rates, the ratio, the target and
    whether it was met (``ok`` or ``MISSED``; rows without a target are
    reports)."""
    width = max([34, *(len(r.name) for r in results)])
    print(f"{'benchmark':<{width}} {'ours':>15} {'anchor':>15}  {'ratio':>6}  target  anchor")
    for r in results:
        target = f">={r.target:.2f}" if r.target is not None else ""
        flag = ""
        if r.target is not None:
            flag = " ok" if r.ratio >= r.target else " MISSED"
        print(
            f"{r.name:<{width}} {r.ours:>10.1f} {r.unit:<4} {r.anchor:>10.1f} {r.unit:<4}"
            f" {r.ratio:>6.2f}  {target:<6}{flag:<7}  {r.anchor_name}"
        )
