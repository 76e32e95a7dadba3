"""The README's promises: its set-up commands match CI, its examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def _literal_blocks() -> list[str]:
    """The reStructuredText literal blocks (after ``::``) of the README."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:(?:    .*)?\n)+)", README):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines).strip() + "\n")
    return blocks


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    first = _literal_blocks()[0].splitlines()
    assert first[0].endswith("securepair demo")
    assert "pytest" in first[1]
    # CI runs exactly the README's test command.
    assert first[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_python_example_runs(tmp_path: Path) -> None:
    examples = [b for b in _literal_blocks() if b.startswith(("from ", "import "))]
    assert examples, "the README has no Python example"
    for number, code in enumerate(examples):
        assert len(code.splitlines()) < 40
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert done.returncode == 0, f"example {number} failed:\n{code}\n{done.stderr}"
