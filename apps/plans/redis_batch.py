"""Lua scripts on Redis from the event loop, every call of one loop turn in one pipeline.

The gateway's admissions and stream-lease renewals go through :func:`batched`: the calls
made in the same turn of the event loop share one write on the process's one multiplexed
connection (:mod:`pendra_console.redis_mux`), so one round trip, and each sends the
script's SHA-1 (``EVALSHA``), not its text. A
thousand streams opened (and renewing their leases) at once used to want a thousand
pooled connections at once, more than the pool's 128 within its 1 s wait, and the
limits failed open (``bench/streams_bench.py`` found it); the one connection has no pool to
run out of. The settles and records of a turn share theirs the same way
(:mod:`apps.gateway.record_handoff`).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from pendra_console.redis_mux import Multiplexer, encode


class Script:
    """A Lua script and the SHA-1 Redis names it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)

    def call(self, *arguments: Any) -> bytes:
        """``EVALSHA`` of this script with ``arguments`` (the number of keys, the keys, the values)."""
        return encode("EVALSHA", self.sha, *arguments)

    def load(self, *arguments: Any) -> bytes:
        """``EVAL`` with the text: what runs when Redis does not know the SHA-1 (restarted, flushed)."""
        return encode("EVAL", self.text, *arguments)


# A script and its arguments, or a command made by :func:`pendra_console.redis_mux.encode`.
Call = tuple[Script, tuple[Any, ...]] | bytes


class _Turn:
    """The calls of one turn of the event loop, and the futures their callers wait on."""

    __slots__ = ("calls", "client", "results")

    def __init__(self, client: Multiplexer) -> None:
        self.client = client
        self.calls: list[Call] = []
        self.results: list[asyncio.Future[Any]] = []


_turns: dict[asyncio.AbstractEventLoop, _Turn] = {}
_flushes: set[asyncio.Task[None]] = set()


async def batched(client: Multiplexer, script: Script, *arguments: Any) -> Any:
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
        results = await run(turn.client, turn.calls)
    except BaseException as exc:  # the batch failed as a whole: every caller sees why
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


async def run(client: Multiplexer, calls: list[Call]) -> list[Any]:
    """Each call's reply, in order, an error reply as its exception, in one write.

    Scripts go as ``EVALSHA``; those Redis does not know (restarted or flushed since) are
    sent again with their text, in a second write. Raises what the connection raised.
    """
    results = await client.execute([call if isinstance(call, bytes) else call[0].call(*call[1]) for call in calls])
    missing = [number for number, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        loads = []
        for number in missing:
            script, arguments = calls[number]  # type: ignore[misc]  (only scripts can be missing)
            loads.append(script.load(*arguments))
        for number, result in zip(missing, await client.execute(loads), strict=True):
            results[number] = result
    return results
