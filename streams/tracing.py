"""W3C trace context (`traceparent`, https://www.w3.org/TR/trace-context/) carried in Kafka record headers.

A client (or `vto send`, or the gateway) puts a `traceparent` header on each frame. The worker continues that trace
on everything it writes about the frame (rendered frame, outcome, dead letter): same trace id, the worker's own
span id, the caller's flags. A frame that comes without one (or with a malformed one) starts a trace of its own.
The worker's span id is derived from the record's topic, partition and offset, so every output of one frame carries
the same span, also when the frame is handled again after a takeover. Log lines about a frame carry its trace id.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
Headers = tuple[tuple[str, bytes], ...]


def new_traceparent() -> str:
    """A fresh root: what a client without a tracer of its own sends with a frame (sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def parse(value: str) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid version-00-compatible traceparent, else None."""
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id, span_id, flags


def header(headers: Iterable[tuple[str, bytes]]) -> str:
    """The traceparent header's value ('' when there is none)."""
    for key, value in headers:
        if key.lower() == HEADER:
            return value.decode("ascii", errors="replace")
    return ""


def continue_trace(headers: Iterable[tuple[str, bytes]], topic: str, partition: int, offset: int) -> str:
    """The traceparent the worker writes for the record at topic/partition/offset."""
    digest = hashlib.blake2b(f"{topic}/{partition}/{offset}".encode(), digest_size=24).digest()
    span_id = digest[16:].hex()
    parent = parse(header(headers))
    if parent is None:
        return f"00-{digest[:16].hex()}-{span_id}-01"
    trace_id, _, flags = parent
    return f"00-{trace_id}-{span_id}-{flags}"


def trace_id(traceparent: str) -> str:
    parsed = parse(traceparent)
    return parsed[0] if parsed else ""
