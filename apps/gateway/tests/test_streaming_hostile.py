"""A worker's stream is not trusted either: a deeply nested event is passed on, never a crash."""

from __future__ import annotations

from apps.gateway.streaming import SSEFilter


def test_a_deeply_nested_usage_event_from_a_worker_does_not_break_the_stream() -> None:
    event = b'data: {"usage": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n"
    stream = SSEFilter(strip_usage=True)

    out = stream.feed(event) + stream.flush()

    assert out == event
