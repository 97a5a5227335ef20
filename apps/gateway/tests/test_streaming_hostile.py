"""A worker's stream is not trusted either: a deeply nested event is passed on, never a crash; only an
exact `data: [DONE]` ends it, and only the usage chunk the client did not ask for is dropped."""

from __future__ import annotations

import pytest

from apps.gateway.streaming import SSEFilter


def test_a_deeply_nested_usage_event_from_a_worker_does_not_break_the_stream() -> None:
    event = b'data: {"usage": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n"
    stream = SSEFilter(strip_usage=True)

    out = stream.feed(event) + stream.flush()

    assert out == event


CONTENT = b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n'
USAGE_ONLY = b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}\n\n'
DONE = b"data: [DONE]\n\n"


def _filtered(chunks: list[bytes], *, strip_usage: bool) -> tuple[bytes, SSEFilter]:
    stream = SSEFilter(strip_usage=strip_usage)
    return b"".join(stream.feed(chunk) for chunk in chunks) + stream.flush(), stream


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"choices": [{"delta": {"content": "[DONE]"}}]}\n\n',  # a model may write it
        b"data: [DONE] and more\n\n",
        b"data: x[DONE]\n\n",
    ],
)
def test_only_an_event_that_is_exactly_done_finishes_the_stream(event: bytes) -> None:
    out, stream = _filtered([CONTENT, event], strip_usage=True)

    assert out == CONTENT + event
    assert not stream.done


def test_done_split_between_chunks_or_without_its_blank_line_finishes_the_stream() -> None:
    _, split = _filtered([CONTENT + DONE[:7], DONE[7:]], strip_usage=True)
    _, unfinished = _filtered([CONTENT + b"data: [DONE]"], strip_usage=True)

    assert split.done
    assert unfinished.done


@pytest.mark.parametrize(
    "chunks",
    [[CONTENT + USAGE_ONLY + DONE], [CONTENT + USAGE_ONLY[:20], USAGE_ONLY[20:] + DONE[:5], DONE[5:]]],
)
def test_the_usage_chunk_the_client_did_not_ask_for_is_dropped_and_the_rest_passes_unchanged(
    chunks: list[bytes],
) -> None:
    out, stream = _filtered(chunks, strip_usage=True)

    assert out == CONTENT + DONE
    assert stream.done
    assert stream.usage == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


def test_the_usage_chunk_the_client_asked_for_passes_byte_for_byte() -> None:
    out, stream = _filtered([CONTENT + USAGE_ONLY + b"data:[DONE]\n\n"], strip_usage=False)

    assert out == CONTENT + USAGE_ONLY + b"data:[DONE]\n\n"
    assert stream.done
