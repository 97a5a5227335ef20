"""The gateway's rate-limit check: one Redis round trip, on the event loop, no thread.

Measured first (bench/README.md): the synchronous core in :mod:`apps.plans.limits`
costs three Redis round trips per chat request, made from a thread pool; under load
each hand-off between the event loop and a pool thread waits for the GIL (Python's
5 ms switch interval), and the gateway managed about 420 requests/s on two
processes. Here the same buckets are counted by one atomic Lua script through an
asyncio Redis client, so the check costs one round trip and no thread.

The buckets are the same, counted under the same keys: the request counter is
django-ratelimit's (its window with the per-subject offset, its cache key, its
5-second expiry fudge), the token and stream counters are :mod:`apps.plans.limits`'s,
all behind Django's cache key prefix. The admin API and the embedded default (no
Redis) keep using django-ratelimit's ``get_usage`` through :mod:`apps.plans.limits`;
either path sees the other's counts.
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
from django_ratelimit.core import _get_window, _make_cache_key
from redis.exceptions import RedisError

from apps.plans import limits
from apps.plans.limits import (
    REQUEST_BUCKETS,
    STREAM_SLOT_TTL,
    STREAMS_BUCKET,
    TOKEN_BUCKETS,
    WINDOW_SECONDS,
    Admission,
    _refusal,
    _streams_key,
    _tokens_key,
    outage,
)
from apps.plans.selectors import plan_for_org_async
from pendra_console.aio import run_db

logger = logging.getLogger("pendra.limits")

# django-ratelimit keeps a window's counter this much longer than the window.
_RATELIMIT_FUDGE = 5
_TOKEN_KEY_FUDGE = 5

# KEYS: request counter, tokens counter ("" when the kind has none), streams counter.
# ARGV: request ttl, request limit, token limit (-1: none), streaming (0/1), stream limit, stream ttl.
# Returns {verdict, requests counted, tokens used, streams open}; verdict 0 = allowed,
# 1 = tokens used up, 2 = requests used up, 3 = too many streams. Same order as the
# synchronous core: a request refused for tokens is not counted.
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
    """One connection pool per event loop (a uvicorn process has one loop)."""
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


def _window_end(subject_key: str) -> int:
    return _get_window(subject_key, WINDOW_SECONDS)


async def admit(*, org_id: int, kind: str, streaming: bool) -> Admission:
    """:func:`apps.plans.limits.admit`, counted in one round trip; same answers, same headers."""
    if not settings.REDIS_URL:
        return await run_db(functools.partial(limits.admit, org_id=org_id, kind=kind, streaming=streaming))
    plan = await plan_for_org_async(org_id)
    subject_key = f"org:{org_id}"
    window_end = _window_end(subject_key)
    request_limit: int = getattr(plan, REQUEST_BUCKETS[kind])
    request_key = cache.make_key(
        _make_cache_key(f"pendra.{kind}", window_end, (request_limit, WINDOW_SECONDS), subject_key, None)
    )
    token_bucket = TOKEN_BUCKETS.get(kind)
    token_limit = getattr(plan, token_bucket[1]) if token_bucket else -1
    tokens_key = cache.make_key(_tokens_key(token_bucket[0], subject_key, window_end)) if token_bucket else ""
    try:
        verdict, count, used, _ = await _client().eval(
            _ADMIT,
            3,
            request_key,
            tokens_key,
            cache.make_key(_streams_key(org_id)),
            WINDOW_SECONDS + _RATELIMIT_FUDGE,
            request_limit,
            token_limit,
            "1" if streaming else "0",
            plan.concurrent_streams,
            STREAM_SLOT_TTL,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)
        return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers={})
    outage.recovered()

    reset = max(1, window_end - int(time.time()))
    headers: dict[str, str] = {}
    if verdict != 1:
        headers = {
            "x-ratelimit-limit-requests": str(request_limit),
            "x-ratelimit-remaining-requests": str(max(0, request_limit - int(count))),
            "x-ratelimit-reset-requests": f"{reset}s",
        }
    if token_bucket is not None:
        headers |= {
            "x-ratelimit-limit-tokens": str(token_limit),
            "x-ratelimit-remaining-tokens": str(max(0, token_limit - int(used))),
            "x-ratelimit-reset-tokens": f"{reset}s",
        }
    if verdict == 1 and token_bucket is not None:
        return _refusal(token_bucket[0], f"{token_limit} tokens/minute", plan, reset, headers)
    if verdict == 2:
        return _refusal(kind, f"{request_limit} requests/minute", plan, reset, headers)
    if verdict == 3:
        return _refusal(STREAMS_BUCKET, f"{plan.concurrent_streams} concurrent streams", plan, 1, headers)
    return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers=headers)


async def settle(*, org_id: int, kind: str, tokens: int, streaming: bool) -> None:
    """:func:`apps.plans.limits.settle` in one round trip: add the tokens, free the stream slot."""
    if not settings.REDIS_URL:
        await run_db(functools.partial(limits.settle, org_id=org_id, kind=kind, tokens=tokens, streaming=streaming))
        return
    subject_key = f"org:{org_id}"
    window_end = _window_end(subject_key)
    token_bucket = TOKEN_BUCKETS.get(kind)
    tokens_key = cache.make_key(_tokens_key(token_bucket[0], subject_key, window_end)) if token_bucket else ""
    if not streaming and (not tokens_key or tokens <= 0):
        return
    try:
        await _client().eval(
            _SETTLE,
            2,
            tokens_key,
            cache.make_key(_streams_key(org_id)),
            max(0, tokens),
            window_end - int(time.time()) + _TOKEN_KEY_FUDGE,
            "1" if streaming else "0",
        )
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)


def spawn_settle(**kwargs: Any) -> None:
    """Settle after the response without making the client wait; keeps the task referenced."""
    task = asyncio.ensure_future(settle(**kwargs))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()
