"""External programs the tests use (openssl, gnutls-cli, curl, servers).

Locally a missing program skips the test that needs it, with the reason.
Under CI (``CI=true``) a missing program fails the test instead: CI installs
every tool, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, *, package: str | None = None) -> str:
    """Return the path of program ``name``, or skip (locally) / fail (CI)."""
    path = shutil.which(name)
    if path is None:
        hint = f" (Debian package {package})" if package else ""
        message = f"{name} is not installed{hint}"
        if IN_CI:
            pytest.fail(f"{message}; .ci/run must install it", pytrace=False)
        pytest.skip(message)
    return path
