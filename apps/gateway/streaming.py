"""Server-sent events from a worker, passed through as they arrive.

The filter cuts the byte stream into complete events (a chunk from the network may
hold several events or part of one), notices the final ``data: [DONE]`` and the
usage the worker reports, and drops the usage-only chunk the gateway asked for on
the client's behalf when the client did not ask for it itself.

The stream is finished only by an event that is exactly ``data: [DONE]``: a model may
write "[DONE]" in its content. An event longer than ``max_event_bytes`` ends the
stream (a worker that never sends a blank line would otherwise grow the buffer
without end).
"""

from __future__ import annotations

import json
from typing import Any

_DONE = b"data: [DONE]"
_DONE_EVENTS = frozenset({_DONE, b"data:[DONE]"})


class EventTooLarge(Exception):
    """An event (or the unfinished rest of one) is longer than the bound; ``str()`` says so."""


def _has_done(events: bytes) -> bool:
    """Whether one of ``events`` (separated by blank lines) is exactly ``data: [DONE]``.

    Only the events around each "[DONE]" are looked at, not every event of the chunk.
    """
    at = events.find(b"[DONE]")
    while at >= 0:
        start = events.rfind(b"\n\n", 0, at)
        start = 0 if start < 0 else start + 2
        end = events.find(b"\n\n", at)
        if events[start : end if end >= 0 else len(events)].strip() in _DONE_EVENTS:
            return True
        at = events.find(b"[DONE]", at + 6)
    return False


def content_events(data: bytes) -> int:
    """Chunks carrying generated text in ``data`` (one token each, as OpenAI-compatible servers stream).

    Cheap counting, no parsing: what a client that leaves mid-stream is billed when the
    worker's own usage never arrives.
    """
    if b'"content"' not in data:
        return 0
    return (
        data.count(b'"content":"')
        - data.count(b'"content":""')
        + data.count(b'"content": "')
        - data.count(b'"content": ""')
    )


class SSEFilter:
    __slots__ = ("_buffer", "done", "max_event_bytes", "strip_usage", "usage")

    def __init__(self, *, strip_usage: bool, max_event_bytes: int = 1024 * 1024) -> None:
        self._buffer = b""
        self.strip_usage = strip_usage
        self.max_event_bytes = max_event_bytes
        self.usage: Any = None
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r\n" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            self._check(data)
            return b""
        complete, self._buffer = data[: end + 2], data[end + 2 :]
        self._check(self._buffer)
        if len(complete) > self.max_event_bytes:  # only then can one of its events be too long
            for event in complete.split(b"\n\n"):
                self._check(event)
        if _has_done(complete):
            self.done = True
        if b'"usage"' not in complete:
            return complete  # the common case: nothing to inspect, pass the bytes on untouched
        events = complete.split(b"\n\n")  # the last is b"": complete ends with a blank line
        kept = [event for event in events if event and (b'"usage"' not in event or self._keep(event))]
        if not events[-1] and len(kept) == len(events) - 1:
            return complete  # none dropped, none empty: the bytes as they came
        return b"".join(event + b"\n\n" for event in kept)

    def _check(self, event: bytes) -> None:
        if len(event) > self.max_event_bytes:
            raise EventTooLarge(f"an event longer than {self.max_event_bytes} bytes")

    def _keep(self, event: bytes) -> bool:
        if b'"usage"' not in event or not event.startswith(b"data: ") or event.startswith(_DONE):
            return True
        try:
            payload = json.loads(event[6:])
        except (ValueError, RecursionError):
            return True
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not usage:
            return True
        self.usage = usage
        # The extra chunk the gateway asked for has no choices, only usage: the client did not want it.
        return not (self.strip_usage and not payload.get("choices"))

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        if rest.strip():
            if _has_done(rest):
                self.done = True
            return rest if rest.endswith(b"\n\n") else rest + b"\n\n"
        return b""
