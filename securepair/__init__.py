"""securepair: a sans-IO TLS engine.

A :class:`SecurePair` sits between two duplex byte buffers: the *encrypted*
side (bytes to and from the network) and the *cleartext* side (bytes to and
from the application).  It performs no I/O, so any transport can drive it.
"""

from __future__ import annotations

from . import events
from ._version import __version__
from .config import TLSConfig
from .errors import (
    BadRecordVersionError,
    BufferFullError,
    CertificateVerificationError,
    ClientHelloError,
    ConfigError,
    EmptyRecordError,
    HandshakeNotCompleteError,
    LocalProtocolError,
    NotTLSError,
    RaggedEOFError,
    RecordError,
    RecordOverflowError,
    RemoteProtocolError,
    SecurePairError,
    TLSAlertReceivedError,
    TLSError,
    UnknownContentTypeError,
    UnsupportedFeatureError,
)
from .events import NEED_DATA
from .pair import PairState, SecurePair

__all__ = [
    "__version__",
    "SecurePair",
    "TLSConfig",
    "PairState",
    "NEED_DATA",
    "events",
    "SecurePairError",
    "LocalProtocolError",
    "ConfigError",
    "UnsupportedFeatureError",
    "HandshakeNotCompleteError",
    "BufferFullError",
    "RemoteProtocolError",
    "NotTLSError",
    "RecordError",
    "UnknownContentTypeError",
    "BadRecordVersionError",
    "RecordOverflowError",
    "EmptyRecordError",
    "ClientHelloError",
    "RaggedEOFError",
    "TLSError",
    "TLSAlertReceivedError",
    "CertificateVerificationError",
]
