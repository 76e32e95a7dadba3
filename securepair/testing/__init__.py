"""Testing support shipped with the package: in-memory links between pairs,
chunkings, and hypothesis strategies.  Used by securepair's own tests and
fuzzers, and meant for users testing their protocol code over TLS."""

from __future__ import annotations

from .link import Chunking, Link, byte_by_byte, random_chunks, whole

__all__ = ["Link", "Chunking", "whole", "byte_by_byte", "random_chunks"]
