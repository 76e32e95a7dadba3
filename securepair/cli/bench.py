"""``securepair bench``: the benchmarks, as ratios against their anchors.

Runs the suite in ``benchmarks/`` (or the parts named) and prints one
table: our rate, the anchor's rate measured in the same run, the ratio, the
target and whether it was met.  A part that needs a tool or library this
machine lacks (uvloop, trio, Twisted, stunnel4, openssl) is reported as
skipped, with the reason.

The benchmarks are not installed with the package: they run from a source
checkout (``git clone`` the repository, then ``pip install -e '.[bench]'``
in it), found next to the package's source tree or in the current folder.
Progress goes to stderr, the table to stdout; each part's own output (what
``python benchmarks/bench_pair.py`` prints) is held back.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TextIO

from . import CommandError

HELP = "run the benchmarks against their anchors and print one ratio table"

#: Part name -> (module in benchmarks/, what it compares), in running order.
PARTS = {
    "records": ("bench_records", "the C record framer vs its pure-Python twin"),
    "pair": ("bench_pair", "SecurePair vs a bare SSLObject loop; bulk vs openssl speed"),
    "pyopenssl": ("bench_pyopenssl", "the pyOpenSSL backend vs a bare pyOpenSSL loop"),
    "adapters": (
        "bench_adapters",
        "asyncio, uvloop, blocking, trio adapters vs their own TLS; Twisted's TLS",
    ),
    "serve": ("bench_serve", "securepair serve vs stunnel4 in front of the same backend"),
}

NOT_A_CHECKOUT = (
    "securepair bench runs from a source checkout (the benchmarks are not installed): "
    "git clone the securepair repository, cd into it, pip install -e '.[bench]', "
    "then run securepair bench there"
)

#: The progress bar's width in characters, when stderr is a terminal.
BAR = 24


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench``."""
    parser.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help=f"parts to run (default: all): {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small runs and few rounds (a smoke test)"
    )
    parser.add_argument("--list", action="store_true", help="list the parts and exit")


def default_places() -> list[Path]:
    """Where to look for ``benchmarks/``: the tree this package was imported
    from (a source checkout or an editable install), then the current folder."""
    return [Path(__file__).resolve().parents[2], Path.cwd()]


def find_benchmarks(places: Iterable[Path]) -> Path | None:
    """The first ``PLACE/benchmarks`` that holds this project's benchmarks."""
    for place in places:
        folder = place / "benchmarks"
        # Checking for our own files keeps another project's "benchmarks"
        # package (in site-packages, next to an installed securepair) out.
        if (folder / "_util.py").is_file() and (folder / "bench_pair.py").is_file():
            return folder
    return None


class _Progress(Protocol):
    step: int
    steps: int
    label: str
    done: int
    total: int


class ProgressLine:
    """Draws progress on ``stream``: one redrawn line on a terminal, plain
    ``step i/n`` lines otherwise (logs, CI)."""

    def __init__(self, stream: TextIO, parts: int) -> None:
        self.stream = stream
        self.parts = parts
        self.tty = stream.isatty()
        self.part = ""
        self.index = 0
        self.drawn = False
        self.last = ""

    def start(self, index: int, part: str) -> None:
        self.index, self.part = index, part
        if self.tty:
            self._draw(f"{self._prefix()} starting")

    def _prefix(self) -> str:
        return f"{self.part} ({self.index}/{self.parts})"

    def __call__(self, progress: _Progress) -> None:
        if not self.tty:
            if progress.done == 0:
                print(
                    f"{self.part}: step {progress.step}/{progress.steps}: {progress.label}",
                    file=self.stream,
                    flush=True,
                )
            return
        share = (progress.step - 1 + progress.done / max(progress.total, 1)) / progress.steps
        filled = round(BAR * min(share, 1.0))
        bar = "#" * filled + "." * (BAR - filled)
        self._draw(
            f"{self._prefix()} step {progress.step}/{progress.steps} [{bar}] {progress.label}"
        )

    def _draw(self, line: str) -> None:
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
        except (OSError, ValueError):
            width = 79
        line = line[:width]
        if line != self.last:
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self.last = line
        self.drawn = True

    def message(self, text: str) -> None:
        """A line that stays (a skip, a failure), printed above the bar."""
        self.clear()
        print(text, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False
            self.last = ""


def _load(folder: Path, module: str) -> ModuleType:
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    util = importlib.import_module("benchmarks._util")
    if Path(util.__file__ or "").resolve().parent != folder.resolve():
        raise CommandError(
            f"another 'benchmarks' package ({Path(util.__file__ or '').parent}) hides "
            f"{folder}; run securepair bench from the checkout"
        )
    return importlib.import_module(f"benchmarks.{module}")


def _run_part(main: Callable[[list[str]], Any], argv: list[str], out: io.StringIO) -> list[Any]:
    """Run one part's ``main`` with its output held back in ``out``."""
    with contextlib.redirect_stdout(out):
        results = main(argv)
    return list(results or [])


def run(args: argparse.Namespace) -> int:
    """Run the parts asked for and print the table; returns the exit status."""
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        raise CommandError(f"unknown part {unknown[0]!r} (choose from {', '.join(PARTS)})")
    folder = find_benchmarks(default_places())
    if args.list:
        for name, (file, what) in PARTS.items():
            print(f"{name:<10} {what}  [benchmarks/{file}.py]")
        print(f"benchmarks: {folder}" if folder else NOT_A_CHECKOUT)
        return 0
    if folder is None:
        raise CommandError(NOT_A_CHECKOUT)
    parts = list(dict.fromkeys(args.parts)) or list(PARTS)
    argv = ["--quick"] if args.quick else []
    line = ProgressLine(sys.stderr, len(parts))
    util: Any = _load(folder, "_util")
    results: list[Any] = []
    skipped: list[str] = []
    failed: list[str] = []
    notes: list[str] = []
    started = time.perf_counter()
    util.progress_hook = line
    try:
        for index, part in enumerate(parts, 1):
            line.start(index, part)
            util.skips.clear()
            util.notes.clear()
            module_name = PARTS[part][0]
            try:
                bench = _load(folder, module_name)
            except ModuleNotFoundError as exc:
                if exc.name == f"benchmarks.{module_name}":
                    failed.append(f"{part}: {folder / module_name}.py is missing")
                    continue
                if (exc.name or "").split(".")[0] in ("benchmarks", "securepair"):
                    raise
                reason = f"needs {exc.name} (pip install -e '.[bench]')"
                skipped.append(f"{part}: {reason}")
                line.message(f"skipped {part}: {reason}")
                continue
            out = io.StringIO()
            try:
                found = _run_part(bench.main, argv, out)
            except Exception as exc:  # one broken part must not lose the others' results
                line.clear()
                sys.stderr.write(out.getvalue())
                traceback.print_exc(file=sys.stderr)
                failed.append(f"{part}: {type(exc).__name__}: {exc}")
                continue
            results += found
            for what, why in util.skips:
                skipped.append(f"{part}: {what}: {why}")
                line.message(f"skipped {part}: {what}: {why}")
            notes += [f"{part}: {text}" for text in util.notes]
    finally:
        util.progress_hook = None
        line.clear()
    if results:
        util.print_table(results)
    for text in notes:
        print(f"note: {text}")
    for text in skipped:
        print(f"skipped: {text}")
    for text in failed:
        print(f"FAILED: {text}")
    elapsed = time.perf_counter() - started
    mode = "quick, " if args.quick else ""
    plural = "s" if len(parts) > 1 else ""
    print(
        f"({mode}{len(parts)} part{plural} in {elapsed:.0f} s, {os.cpu_count()} CPUs,"
        f" Python {sys.version.split()[0]})"
    )
    return 1 if failed else 0
