"""``securepair bench``, run as a user runs it: a subprocess from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from securepair.cli import bench, main

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "securepair", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_list_names_every_part() -> None:
    done = run_bench("--list")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert names[: len(bench.PARTS)] == list(bench.PARTS)
    assert f"benchmarks: {ROOT / 'benchmarks'}" in done.stdout


def test_records_quick_prints_one_ratio_table() -> None:
    done = run_bench("records", "--quick")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    headers = [line for line in lines if line.startswith("benchmark ")]
    assert len(headers) == 1, done.stdout
    assert "ratio" in headers[0].split()
    rows = lines[lines.index(headers[0]) + 1 :]
    framer = [row for row in rows if row.startswith("(b) 100,000 x 32 B records")]
    assert framer and ("ok" in framer[0].split() or "MISSED" in framer[0].split())
    # What the part prints on its own is held back; progress goes to stderr
    # as plain lines, since stderr is not a terminal here.
    assert "record framer: C vs the Python twin" not in done.stdout
    assert "records: step 1/5: (a) 1,000 x 16 KiB records" in done.stderr


def test_unknown_part_is_a_one_line_error() -> None:
    done = run_bench("records", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "securepair bench: error: unknown part 'nope' "
        "(choose from records, pair, pyopenssl, adapters, serve)"
    ]
    assert done.stdout == ""


def test_benchmarks_are_found_only_in_a_checkout(tmp_path: Path) -> None:
    assert bench.find_benchmarks([tmp_path, ROOT]) == ROOT / "benchmarks"
    assert bench.find_benchmarks([tmp_path]) is None
    # A "benchmarks" folder of another project is not ours.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "_util.py").write_text("")
    assert bench.find_benchmarks([tmp_path]) is None


def test_outside_a_checkout_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "default_places", lambda: [tmp_path])
    assert main(["bench", "records", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        "securepair bench: error: securepair bench runs from a source checkout"
    )
    assert "git clone" in err[0] and "pip install -e" in err[0]
