"""Testing support shipped with the package: in-memory links between pairs,
chunkings, a record-level tampering man in the middle, and hypothesis
strategies.  Used by securepair's own tests and fuzzers, and meant for users
testing their protocol code over TLS.

The strategies live in :mod:`securepair.testing.strategies` (import it
where you use hypothesis)."""

from __future__ import annotations

from .link import Chunking, Link, byte_by_byte, fixed_cuts, random_chunks, whole
from .tamper import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Action,
    Applied,
    Delay,
    Direction,
    Drop,
    Duplicate,
    FlipBits,
    Inject,
    Outcome,
    Reorder,
    Replace,
    Tamper,
    TamperLink,
    TamperPlan,
    Truncate,
    alert_record,
    record,
)

__all__ = [
    "Link",
    "Chunking",
    "whole",
    "byte_by_byte",
    "random_chunks",
    "fixed_cuts",
    "TamperLink",
    "TamperPlan",
    "Tamper",
    "Action",
    "Drop",
    "Duplicate",
    "Truncate",
    "Reorder",
    "Delay",
    "FlipBits",
    "Inject",
    "Replace",
    "Applied",
    "Outcome",
    "Direction",
    "CLIENT_TO_SERVER",
    "SERVER_TO_CLIENT",
    "record",
    "alert_record",
]
