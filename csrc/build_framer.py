"""cffi builder for the C record framer (out-of-line API mode).

``setup.py`` names this file in ``cffi_modules``.  Run by hand
(``python csrc/build_framer.py``) it builds ``securepair/records/_cframer``
in place, as ``pip install -e .`` would.  ``framer.h`` is both the cdef and
the header the C includes, so the two can never disagree.  The module also
carries ``sp_info_filter`` (``infofilter.h``), the pyOpenSSL backend's info
callback that calls into Python for alerts only.

The package version is passed to the C as a macro and exposed by
``sp_version()``; ``securepair.records.c`` refuses to load a module built
for another version (a stale in-place build is the usual cause).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def package_version() -> str:
    """The ``__version__`` string of ``securepair/_version.py``, read without importing."""
    tree = ast.parse((ROOT / "securepair" / "_version.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise RuntimeError("securepair/_version.py does not assign a string __version__")


def make_builder(*, absolute: bool = False) -> FFI:
    """The FFI builder.  Source paths are relative to the project root, as
    setuptools wants them, or ``absolute`` for cffi's own ``compile()``
    (which runs in its temporary directory: fuzz/build_cframer.py); then
    compiler flags are the caller's (``CFLAGS``)."""

    def path(p: Path) -> str:
        return str(p) if absolute else os.path.relpath(p, ROOT)

    builder = FFI()
    builder.cdef((HERE / "framer.h").read_text(encoding="utf-8"))
    builder.cdef((HERE / "infofilter.h").read_text(encoding="utf-8"))
    # Python+C: infofilter.c, a file of its own, calls it.
    builder.cdef('extern "Python+C" void sp_on_alert(const void *, int, int);')
    builder.set_source(
        "securepair.records._cframer",
        '#include <stdint.h>\n#include "framer.h"\n#include "infofilter.h"\n',
        sources=[path(HERE / "framer.c"), path(HERE / "infofilter.c")],
        include_dirs=[path(HERE)],
        define_macros=[("SECUREPAIR_VERSION", f'"{VERSION}"')],
        extra_compile_args=[] if absolute or sys.platform == "win32" else ["-O2"],
    )
    return builder


VERSION = package_version()
# Only characters that need no escaping inside a C string literal.
if not all(c.isalnum() or c in ".+-_!" for c in VERSION):
    raise RuntimeError(f"version {VERSION!r} cannot be embedded in C as it is")

ffibuilder = make_builder()


def build_in_place() -> None:
    """Build the module next to the sources, exactly as ``pip install -e .`` does."""
    # Python prefers the most specific suffix, so a module left under
    # another name by an older build would shadow the new one.
    for old in (ROOT / "securepair" / "records").glob("_cframer.*"):
        if old.suffix in (".so", ".pyd"):
            old.unlink()
    env = {**os.environ, "SECUREPAIR_BUILD_EXT": "yes"}
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, env=env, check=True
    )


if __name__ == "__main__":
    build_in_place()
