"""Log lines for ``securepair serve``: one event per line, plain or JSON.

Plain lines read left to right as a sentence with fields after it
(``bytes-in=...``)::

    2026-11-23T15:20:01.123Z serve[4242] refused 127.0.0.2:51234 reason="not in --allow"

JSON lines carry the same fields, their names spelt with underscores
(``"bytes_in"``), for log shippers::

    {"time": "2026-11-23T15:20:01.123Z", "pid": 4242, "event": "refused",
     "peer": "127.0.0.2:51234", "reason": "not in --allow"}

Lines go to standard error, written whole with one ``write`` so that the
lines of several workers sharing the stream do not interleave.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

__all__ = ["Log", "format_peer"]

#: Events that are logged even with ``quiet``: problems and life cycle.
#: A client's own failures (refused, timeout, not-tls...) are left out, so
#: that a scan does not fill the log; the server's are not.
_ALWAYS = frozenset(
    {"listening", "stopping", "stopped", "error", "worker-exited", "worker-started", "warning"}
    | {"service-unreachable", "full"}
)


def format_peer(address: Any) -> str:
    """``host:port`` (``[v6]:port``) for a socket address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _timestamp(now: float) -> str:
    seconds = int(now)
    millis = int((now - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _plain_value(value: Any) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "._-:/[]*@+" for c in text):
        return text
    return json.dumps(text)


class Log:
    """Writes events; ``event(name, subject, **fields)``."""

    def __init__(self, fmt: str = "text", *, quiet: bool = False, stream: TextIO | None = None):
        self.format = fmt
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.pid = os.getpid()

    def event(self, name: str, subject: str | None = None, /, **fields: Any) -> None:
        """Log event ``name`` about ``subject`` (usually the peer) with
        ``fields``; ``None`` fields are left out."""
        if self.quiet and name not in _ALWAYS:
            return
        now = time.time()
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.format == "json":
            record: dict[str, Any] = {"time": _timestamp(now), "pid": self.pid, "event": name}
            if subject is not None:
                record["peer"] = subject
            record.update(fields)
            line = json.dumps(record, default=str)
        else:
            parts = [_timestamp(now), f"serve[{self.pid}]", name]
            if subject is not None:
                parts.append(subject)
            parts += [f"{k.replace('_', '-')}={_plain_value(v)}" for k, v in fields.items()]
            line = " ".join(parts)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed log stream must not take the server down
