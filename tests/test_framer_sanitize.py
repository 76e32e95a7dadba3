"""The C framer under AddressSanitizer and UndefinedBehaviorSanitizer.

Runs ``make -C csrc sanitize``: framer.c and the driver csrc/sanitize_main.c
are built with ``-fsanitize=address,undefined -fno-sanitize-recover=all`` and
fed hostile hand-made inputs, every prefix of real ClientHellos (whole and
fragmented) and a few hundred thousand random and mutated buffers, each in a
heap block of exactly its size.  Any out-of-bounds access, leak or undefined
behaviour aborts the run and fails this test.  Locally it is skipped when
there is no C compiler or make; under CI it must run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ._tools import require_tool

CSRC = Path(__file__).resolve().parent.parent / "csrc"


@pytest.mark.peer("cc")
def test_framer_under_sanitizers(tmp_path: Path) -> None:
    make = require_tool("make", package="make")
    compiler = require_tool(os.environ.get("CC", "cc"), package="gcc")
    result = subprocess.run(
        [make, "-C", str(CSRC), "sanitize", f"O={tmp_path}", f"CC={compiler}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no sanitizer reports" in output, output
    assert "ERROR: AddressSanitizer" not in output
    assert "runtime error" not in output
