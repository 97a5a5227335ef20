"""The gateway's counter back end: one Redis round trip, on the event loop, no thread.

Measured first (bench/README.md): counting with Django's cache costs three Redis round
trips per chat request, made from a thread pool; under load each hand-off between the
event loop and a pool thread waits for the GIL (Python's 5 ms switch interval), and the
gateway managed about 420 requests/s on two processes. Here a request's buckets are
counted by one atomic Lua script through an asyncio Redis client, so the check costs one
round trip and no thread.

The keys, windows, bucket order and the answer (:func:`apps.plans.limit_decision.decide`)
are :mod:`apps.plans.limit_decision`'s, the same as the synchronous back end
(:mod:`apps.plans.limits`), so either path sees the other's counts. Without Redis (the
embedded default) :func:`admit` and :func:`settle` hand over to that back end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from apps.plans import limits
from apps.plans.limit_decision import (
    COUNTER_FUDGE_SECONDS,
    STREAM_SLOT_TTL,
    WINDOW_SECONDS,
    Admission,
    Counted,
    Verdict,
    allowed_unchecked,
    decide,
    org_subject,
    outage,
    request_key,
    request_limit,
    streams_key,
    token_limit,
    tokens_key,
    window_end,
)
from apps.plans.selectors import plan_for_org_async
from pendra_console.aio import run_db

logger = logging.getLogger("pendra.limits")

# KEYS: request counter, tokens counter ("" when the kind has none), streams counter.
# ARGV: request ttl, request limit, token limit (-1: none), streaming (0/1), stream limit, stream ttl.
# Returns {verdict, requests counted, tokens used, streams open}; the verdict is a
# limit_decision.Verdict, found in its bucket order: a request refused for tokens is not counted.
_ADMIT = """
local tokens = 0
if tonumber(ARGV[3]) >= 0 then
    tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
    if tokens >= tonumber(ARGV[3]) then
        return {1, 0, tokens, 0}
    end
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if count > tonumber(ARGV[2]) then
    return {2, count, tokens, 0}
end
local streams = 0
if ARGV[4] == '1' then
    streams = redis.call('INCR', KEYS[3])
    if streams == 1 then
        redis.call('EXPIRE', KEYS[3], ARGV[6])
    end
    if streams > tonumber(ARGV[5]) then
        redis.call('DECR', KEYS[3])
        return {3, count, tokens, streams - 1}
    end
end
return {0, count, tokens, streams}
"""

# KEYS: tokens counter (or ""), streams counter. ARGV: tokens, tokens ttl, streaming (0/1).
_SETTLE = """
local tokens = tonumber(ARGV[1])
if tokens > 0 and KEYS[1] ~= '' then
    if redis.call('INCRBY', KEYS[1], tokens) == tokens then
        redis.call('EXPIRE', KEYS[1], ARGV[2])
    end
end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
    if redis.call('DECR', KEYS[2]) < 0 then
        redis.call('SET', KEYS[2], 0, 'KEEPTTL')
    end
end
return 0
"""

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    """One connection pool per event loop (a uvicorn process has one loop); also the gateway's
    for the commands it pipelines with the settle (the records' hand-off)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A bounded pool that waits for a free connection rather than failing a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=128, timeout=1, socket_timeout=1, socket_connect_timeout=1
        )
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


client = _client


async def admit(*, org_id: int, kind: str, streaming: bool) -> Admission:
    """:func:`apps.plans.limits.admit`, counted in one round trip; same answers, same headers."""
    if not settings.REDIS_URL:
        return await run_db(functools.partial(limits.admit, org_id=org_id, kind=kind, streaming=streaming))
    plan = await plan_for_org_async(org_id)
    subject = org_subject(org_id)
    end = window_end(subject)
    limit = request_limit(plan, kind)
    tokens = token_limit(plan, kind)
    token_counter = tokens_key(kind, subject, end)
    try:
        verdict, count, used, _ = await _client().eval(
            _ADMIT,
            3,
            cache.make_key(request_key(kind, subject, limit, end)),
            cache.make_key(token_counter) if token_counter is not None else "",
            cache.make_key(streams_key(org_id)),
            WINDOW_SECONDS + COUNTER_FUDGE_SECONDS,
            limit,
            tokens if tokens is not None else -1,
            "1" if streaming else "0",
            plan.concurrent_streams,
            STREAM_SLOT_TTL,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)
        return allowed_unchecked(kind)
    outage.recovered()
    counted = Counted(Verdict(int(verdict)), requests=int(count), tokens=int(used))
    return decide(plan=plan, kind=kind, subject=subject, counted=counted)


async def settle(*, org_id: int, kind: str, tokens: int, streaming: bool) -> None:
    """:func:`apps.plans.limits.settle` in one round trip: add the tokens, free the stream slot."""
    if not settings.REDIS_URL:
        await run_db(functools.partial(limits.settle, org_id=org_id, kind=kind, tokens=tokens, streaming=streaming))
        return
    command = _settle_command(org_id=org_id, kind=kind, tokens=tokens, streaming=streaming)
    if command is None:
        return
    try:
        await _client().eval(*command)
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)


def queue_settle(pipe: Any, *, org_id: int, kind: str, tokens: int, streaming: bool) -> bool:
    """Add :func:`settle`'s command to ``pipe`` (a pipeline of :func:`client`), so it costs no
    round trip of its own; False when there is nothing to settle. Redis back end only."""
    command = _settle_command(org_id=org_id, kind=kind, tokens=tokens, streaming=streaming)
    if command is None:
        return False
    pipe.eval(*command)
    return True


def _settle_command(*, org_id: int, kind: str, tokens: int, streaming: bool) -> tuple[Any, ...] | None:
    subject = org_subject(org_id)
    end = window_end(subject)
    token_counter = tokens_key(kind, subject, end)
    if not streaming and (token_counter is None or tokens <= 0):
        return None
    return (
        _SETTLE,
        2,
        cache.make_key(token_counter) if token_counter is not None else "",
        cache.make_key(streams_key(org_id)),
        max(0, tokens),
        end - int(time.time()) + COUNTER_FUDGE_SECONDS,
        "1" if streaming else "0",
    )


def spawn_settle(**kwargs: Any) -> None:
    """Settle after the response without making the client wait; keeps the task referenced."""
    task = asyncio.ensure_future(settle(**kwargs))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()
