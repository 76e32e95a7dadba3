"""Build the C record framer with AddressSanitizer and libFuzzer coverage.

This is the recipe atheris documents for native extensions
(atheris/native_extension_fuzzing.md): compile the extension with clang and
``-fsanitize=address,fuzzer-no-link``, then run Python with atheris's
``asan_with_fuzzer.so`` preloaded, so that the sanitizer and libFuzzer's
coverage counters live in one runtime.  UndefinedBehaviorSanitizer is added
(its runtime is part of ASan's) and made fatal, so an overflowing shift or
a misaligned load in the framer is a crash, not a warning.

The module goes to ``fuzz/build/asan/_cframer*.so``, not next to the
sources: the ordinary in-place build (``python csrc/build_framer.py``) is
left alone, and the harnesses load the instrumented one only when
``SECUREPAIR_FUZZ_CFRAMER`` names it (``fuzz/run`` does that).

Usage: ``python fuzz/build_cframer.py [--out DIR]``; prints the module path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SANITIZERS = "-fsanitize=address,undefined,fuzzer-no-link"
CFLAGS = [
    SANITIZERS,
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
]


def build(out: Path) -> Path:
    """Compile the instrumented module into ``out``; return its path."""
    sys.path.insert(0, str(ROOT / "csrc"))
    try:
        import build_framer
    finally:
        sys.path.pop(0)
    # distutils reads these when it sets up the compiler: clang for both
    # steps, the sanitizer flags on each (an OSS-Fuzz build sets CC and
    # CFLAGS itself; they are kept and ours are added).
    cc = os.environ.get("CC", "clang")
    cflags = " ".join([os.environ.get("CFLAGS", ""), *CFLAGS]).strip()
    os.environ["CC"] = cc
    os.environ["CFLAGS"] = cflags
    os.environ["LDSHARED"] = f"{cc} -shared {SANITIZERS}"
    os.environ["LDFLAGS"] = os.environ.get("LDFLAGS", "")
    tmp = out / "tmp"
    built = Path(build_framer.make_builder(absolute=True).compile(tmpdir=str(tmp)))
    out.mkdir(parents=True, exist_ok=True)
    target = out / built.name
    shutil.copy2(built, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "build" / "asan")
    args = parser.parse_args()
    print(build(args.out.resolve()))


if __name__ == "__main__":
    main()
