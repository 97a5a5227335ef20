"""Lua scripts on Redis from the event loop, every call of one loop turn in one pipeline.

The gateway's admissions and stream-lease renewals go through :func:`batched`: the calls
made in the same turn of the event loop share one pipeline, so one round trip and one
pooled connection, and each sends the script's SHA-1 (``EVALSHA``), not its text. A
thousand streams opened (and renewing their leases) at once used to want a thousand
pooled connections at once, more than the pool's 128 within its 1 s wait, and the
limits failed open (``bench/streams_bench.py`` found it). The settles and records of a
turn share theirs the same way (:mod:`apps.gateway.record_handoff`).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError


class Script:
    """A Lua script and the SHA-1 Redis names it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)


class _Turn:
    """The calls of one turn of the event loop, and the futures their callers wait on."""

    __slots__ = ("calls", "client", "results")

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.calls: list[tuple[Script, tuple[Any, ...]]] = []
        self.results: list[asyncio.Future[Any]] = []


_turns: dict[asyncio.AbstractEventLoop, _Turn] = {}
_flushes: set[asyncio.Task[None]] = set()


async def batched(client: aioredis.Redis, script: Script, *arguments: Any) -> Any:
    """``script``'s answer for ``arguments`` (what ``EVALSHA`` takes after the script's name);
    raises what Redis or the connection raised. ``client`` is the event loop's own (one per loop)."""
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = _Turn(client)
        loop.call_soon(_start_flush, loop, turn)  # after the requests ready in this turn have joined
    future: asyncio.Future[Any] = loop.create_future()
    turn.calls.append((script, arguments))
    turn.results.append(future)
    return await future


def _start_flush(loop: asyncio.AbstractEventLoop, turn: _Turn) -> None:
    if _turns.get(loop) is turn:
        del _turns[loop]
    task = loop.create_task(_flush(turn))
    _flushes.add(task)
    task.add_done_callback(_flushes.discard)


async def _flush(turn: _Turn) -> None:
    try:
        results = await _execute(turn.client, turn.calls, sha=True)
        missing = [number for number, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # a Redis restarted or flushed since: EVAL with the text loads it again
            again = await _execute(turn.client, [turn.calls[number] for number in missing], sha=False)
            for number, result in zip(missing, again, strict=True):
                results[number] = result
    except BaseException as exc:  # the pipeline failed as a whole: every caller sees why
        for future in turn.results:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else RedisError(repr(exc)))
        if not isinstance(exc, Exception):
            raise
        return
    for future, result in zip(turn.results, results, strict=True):
        if future.done():  # its request was cancelled meanwhile
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


async def _execute(client: aioredis.Redis, calls: list[tuple[Script, tuple[Any, ...]]], *, sha: bool) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, arguments in calls:
            if sha:
                pipe.evalsha(script.sha, *arguments)
            else:
                pipe.eval(script.text, *arguments)
        return list(await pipe.execute(raise_on_error=False))
