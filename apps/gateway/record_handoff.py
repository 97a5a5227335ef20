"""The records' durable hand-off from the gateway: one write per event-loop turn.

Every request that ends in the same turn of the event loop joins one write on the process's
multiplexed Redis connection (:func:`apps.plans.limits_async.mux`): its settle
(:data:`apps.plans.limits_async.SETTLE_SCRIPT`) and its record's ``XADD``
(:mod:`apps.requestlog.handoff`). Each request waits for the replies before its last
bytes, so what a client was answered is in Redis; many requests share one round trip,
which is what keeps the hand-off's CPU cost small under load (bench/README.md).

Redis down: fail open. The rows go to the in-process writer
(:data:`apps.requestlog.recorder.recorder`) and the settle is skipped, as admission
skipped counting; the outage is logged once, and its end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from apps.plans import limits_async, redis_batch
from apps.requestlog import handoff
from apps.requestlog.recorder import recorder
from apps.requestlog.services import RecordRows

logger = logging.getLogger("pendra.gateway")

Item = tuple[RecordRows, dict[str, Any] | None]


class _Turn:
    """The requests ending in one turn of the event loop, and the future they wait on."""

    __slots__ = ("done", "items")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[Item] = []
        self.done: asyncio.Future[None] = loop.create_future()


_turns: dict[asyncio.AbstractEventLoop, _Turn] = {}
_flushes: set[asyncio.Task[None]] = set()
_refused = False  # Redis refused records: log the outage once, and its end


async def hand_off(rows: RecordRows, settle: dict[str, Any] | None) -> None:
    """Return once Redis holds the record (or, failing that, this process's writer does)."""
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = _Turn(loop)
        # call_soon: the requests already ready in this turn run first and join the write.
        loop.call_soon(_start_flush, loop, turn)
    turn.items.append((rows, settle))
    # Shielded: a request cancelled now does not cancel the flush that carries the others' rows.
    await asyncio.shield(turn.done)


def _start_flush(loop: asyncio.AbstractEventLoop, turn: _Turn) -> None:
    if _turns.get(loop) is turn:
        del _turns[loop]
    task = loop.create_task(_flush(turn))
    _flushes.add(task)
    task.add_done_callback(_flushes.discard)


async def _flush(turn: _Turn) -> None:
    try:
        calls, xadds = _calls(turn.items)
    except Exception as exc:  # a row that cannot be encoded: the in-process writer still takes it
        logger.exception("request records could not be encoded for Redis")
        _failed([rows for rows, _ in turn.items], exc)
        turn.done.set_result(None)  # whatever happened, no request waits on this turn for ever
        return
    try:
        results = await redis_batch.run(limits_async.mux(), calls)
    except (RedisError, OSError, TimeoutError) as exc:
        _failed([rows for rows, _ in turn.items], exc)
    except asyncio.CancelledError as exc:
        _failed([rows for rows, _ in turn.items], exc)  # whether Redis took them is unknown: the uid keeps one
        raise
    else:
        refused = [(turn.items[n][0], results[at]) for n, at in enumerate(xadds) if isinstance(results[at], Exception)]
        if refused:
            _failed([rows for rows, _ in refused], refused[0][1])
        else:
            _recovered()
    finally:
        if not turn.done.done():
            turn.done.set_result(None)


def _calls(items: list[Item]) -> tuple[list[redis_batch.Call], list[int]]:
    """The turn's settles and XADDs, and where each record's XADD sits among them."""
    calls: list[redis_batch.Call] = []
    xadds: list[int] = []
    for rows, settle in items:
        if settle is not None and (arguments := limits_async.settle_arguments(**settle)) is not None:
            calls.append((limits_async.SETTLE_SCRIPT, arguments))
        xadds.append(len(calls))
        calls.append(handoff.xadd(handoff.encode(*rows)))
    return calls, xadds


def _failed(rows: list[RecordRows], exc: BaseException) -> None:
    global _refused
    if not _refused:
        logger.error("Redis refused request records (%s); this process's writer takes them", type(exc).__name__)
        _refused = True
    for row in rows:
        recorder.submit(*row)


def _recovered() -> None:
    global _refused
    if _refused:
        logger.warning("Redis takes request records again")
        _refused = False
