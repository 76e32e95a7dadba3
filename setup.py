"""Build script: the package, and the C record framer built by cffi.

``SECUREPAIR_BUILD_EXT`` chooses the build:

* ``yes`` -- build the C framer; fail the install if it does not compile.
  CI uses this, so a broken C build can never pass silently.
* ``no`` -- pure Python: ``securepair.records`` uses its Python twin.
* ``auto`` (the default) -- try the C framer; if there is no compiler or the
  build fails, print one warning line and install the pure-Python package.

Everything else (metadata, dependencies, tool settings) is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

MODE = os.environ.get("SECUREPAIR_BUILD_EXT", "auto").strip().lower() or "auto"
if MODE not in ("yes", "no", "auto"):
    sys.exit(f"SECUREPAIR_BUILD_EXT must be yes, no or auto, not {MODE!r}")

# What a missing or failing compiler raises from inside build_ext.
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """build_ext that, in ``auto`` mode, turns a failed C build into a warning."""

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as exc:
            self._give_up(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if MODE == "yes":
            raise exc
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        print(
            "WARNING: securepair: the C record framer did not build "
            f"({reason}); installing the pure-Python framer instead",
            file=sys.stderr,
        )
        # Nothing half-built may be copied into place.
        self.extensions = []


options: dict[str, Any] = {}
if MODE != "no":
    options["cffi_modules"] = ["csrc/build_framer.py:ffibuilder"]
    options["cmdclass"] = {"build_ext": OptionalBuildExt}

setup(**options)
