"""Shared test configuration: hypothesis profiles and fixture plugins."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "dev" keeps a local run quick; "ci" is what .ci/run selects; "long" is for
# soak runs by hand (HYPOTHESIS_PROFILE=long).
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "long", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

pytest_plugins = ["tests.fixtures_records", "tests.fixtures_engine"]
