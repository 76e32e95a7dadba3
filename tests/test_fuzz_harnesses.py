"""CI runs every fuzz harness for a few seconds, and the user recipe as written.

Each harness in ``fuzz/`` is run the way ``fuzz/run`` runs it (atheris /
libFuzzer in a subprocess) on seeds made from real handshakes at test time
plus the committed corpus, for a bounded time; then on every crash input
kept in ``fuzz/regressions/``, which must now pass.  Where clang and the
sanitizer runtime are installed, the C framer is also built with ASan and
libFuzzer coverage and the framer harnesses run on it.  atheris is required
in CI and skipped locally when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ._tools import IN_CI

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"

#: Harness -> seconds of fuzzing (the pair harness captures handshakes at
#: start and runs a TLS connection per input, so it gets longer).
HARNESSES = {"scan": 3, "client_hello": 3, "sniff": 2, "pair": 8, "starttls": 5, "proxy": 2}


def _require_atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("atheris is not installed; CI must install it", pytrace=False)
        pytest.skip("atheris is not installed (pip install atheris)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(FUZZ)])
    env.update(extra)
    return env


def _run(args: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
        cwd=ROOT,
        check=False,
    )


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "Instrumenting" not in ln]
    return "\n".join(lines[-40:])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed corpora from real handshakes, made now (as fuzz/run does)."""
    _require_atheris()
    out = tmp_path_factory.mktemp("seeds")
    done = _run([str(FUZZ / "make_seeds.py"), "--out", str(out)], timeout=300)
    assert done.returncode == 0, _tail(done)
    return out


@pytest.mark.parametrize("target", list(HARNESSES))
def test_harness_runs_clean(target: str, seeds: Path, tmp_path: Path) -> None:
    corpus = FUZZ / "corpus" / target
    inputs = [str(seeds / target)] + ([str(corpus)] if corpus.is_dir() else [])
    done = _run(
        [
            str(FUZZ / f"fuzz_{target}.py"),
            str(tmp_path),  # new finds go here, not into the repository
            *inputs,
            f"-max_total_time={HARNESSES[target]}",
            "-max_len=4096",
            "-timeout=60",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
        ],
        timeout=600,
    )
    assert done.returncode == 0, _tail(done)
    assert "Done" in done.stderr, _tail(done)


#: Crash inputs the fuzzers found, named ``<target>-<what it was>``.
CRASHES = sorted((FUZZ / "regressions").glob("*-*"))


@pytest.mark.parametrize("crash", CRASHES, ids=[c.name for c in CRASHES])
def test_regression_passes(crash: Path) -> None:
    """Every crash the fuzzers found is kept and replayed; none may crash."""
    _require_atheris()
    target = crash.name.split("-")[0]
    done = _run([str(FUZZ / f"fuzz_{target}.py"), str(crash)], timeout=600)
    assert done.returncode == 0, _tail(done)


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is needed for the sanitizer build")
@pytest.mark.parametrize("target", ["scan", "client_hello"])
def test_framer_harnesses_under_asan(target: str, seeds: Path, tmp_path: Path) -> None:
    import atheris

    runtime = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not runtime.exists():
        pytest.skip("atheris was built without its sanitizer runtime")
    built = _run([str(FUZZ / "build_cframer.py"), "--out", str(tmp_path / "asan")], timeout=300)
    assert built.returncode == 0, _tail(built)
    module = built.stdout.strip().splitlines()[-1]
    (tmp_path / "work").mkdir()
    done = _run(
        [
            str(FUZZ / f"fuzz_{target}.py"),
            str(tmp_path / "work"),
            str(seeds / target),
            "-max_total_time=3",
            f"-artifact_prefix={tmp_path}/",
        ],
        timeout=600,
        SECUREPAIR_FUZZ_CFRAMER=module,
        LD_PRELOAD=str(runtime),
        ASAN_OPTIONS="detect_leaks=0",
    )
    assert done.returncode == 0, _tail(done)
    assert "Done" in done.stderr, _tail(done)


def test_run_script_lists_every_harness() -> None:
    done = _run([str(FUZZ / "run"), "--help"], timeout=60)
    assert done.returncode == 0, done.stderr
    for harness in FUZZ.glob("fuzz_*.py"):
        assert harness.stem.removeprefix("fuzz_") in done.stdout


# --------------------------------------------------------------------------
# The user recipe, as written.

RECIPE = ROOT / "examples" / "fuzz_my_protocol.py"


def test_recipe_with_hypothesis() -> None:
    done = _run([str(RECIPE), "--examples", "60"], timeout=600)
    assert done.returncode == 0, _tail(done)
    assert "invariants held" in done.stdout


def test_recipe_with_atheris(tmp_path: Path) -> None:
    _require_atheris()
    done = _run(
        [str(RECIPE), "--atheris", "-runs=400", f"-artifact_prefix={tmp_path}/"], timeout=600
    )
    assert done.returncode == 0, _tail(done)
    assert "Done 400 runs" in done.stderr, _tail(done)
