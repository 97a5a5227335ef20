"""The gateway's counter back end: one Redis round trip, on the event loop, no thread.

Measured first (bench/README.md): counting with Django's cache costs three Redis round
trips per chat request, made from a thread pool; under load each hand-off between the
event loop and a pool thread waits for the GIL (Python's 5 ms switch interval), and the
gateway managed about 420 requests/s on two processes. Here a request's buckets are
counted by one atomic Lua script through an asyncio Redis client, so the check costs one
round trip and no thread.

The keys, windows, bucket order and the answer (:func:`apps.plans.limit_decision.decide`)
are :mod:`apps.plans.limit_decision`'s, the same as the synchronous back end
(:mod:`apps.plans.limits`), so either path sees the other's counts. The token reservation
and the stream's lease ride the same single round trip as the counts; a stream's lease is
renewed (:class:`LeaseKeeper`) only while the stream outlives a third of a lease, so a
short request costs no extra round trip. The admissions and lease renewals of one event-loop turn share that
round trip (one pipeline of ``EVALSHA`` s), as the settles and records of one turn share
theirs (:mod:`apps.gateway.record_handoff`). Without Redis (the embedded default)
:func:`admit`, :func:`renew` and :func:`settle` hand over to that back end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from apps.plans import limits
from apps.plans.key_limits import KeyLimits, key_never_fits, key_requests_key, key_reservation, key_tokens_key
from apps.plans.limit_decision import (
    COUNTER_FUDGE_SECONDS,
    NO_TOKENS,
    WINDOW_SECONDS,
    Admission,
    Counted,
    TokenBound,
    Verdict,
    allowed_unchecked,
    budgets_for,
    decide,
    lease_seconds,
    leases_key,
    never_fits,
    new_lease_id,
    org_subject,
    outage,
    request_key,
    request_limit,
    reservation,
    settle_delta,
    spend_keys,
    token_limit,
    tokens_key,
    window_end,
)
from apps.plans.pricing import SPEND_TTL_SECONDS
from apps.plans.redis_batch import Script, batched
from apps.plans.selectors import plan_for_org_async
from pendra_console import redis_mux
from pendra_console.aio import run_db
from pendra_console.cache import LEASE_RENEW, cache_key
from pendra_console.hot_settings import hot

logger = logging.getLogger("pendra.limits")

# KEYS: request counter, tokens counter ("" when the kind has none), stream leases,
# the month's spend of the org and of the key ("" without a key), the key's own request
# counter and tokens counter ("" when it has no such limit).
# ARGV: 1 request ttl, 2 request limit, 3 token limit (-1: none), 4 streaming (0/1),
# 5 stream limit, 6 lease seconds, 7 tokens to reserve, 8 tokens ttl, 9 now, 10 lease id,
# 11 the org's hard budget, 12 the key's (spend units, -1: none), 13 the key's own request
# limit, 14 its own token limit (-1: none), 15 tokens to reserve in the key's counter.
# Returns {verdict, requests counted, tokens used (with this reservation once admitted),
# streams open}; the verdict is a limit_decision.Verdict, found in its bucket order: a
# request refused for its budget or tokens is not counted, and a refused request reserves
# nothing. The leases are pendra_console.cache's sorted set (LEASE_TAKE there), inlined to
# stay one script.
_ADMIT = """
local org_budget = tonumber(ARGV[11])
if org_budget >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= org_budget then
    return {4, 0, 0, 0}
end
local key_budget = tonumber(ARGV[12])
if key_budget >= 0 and KEYS[5] ~= '' and tonumber(redis.call('GET', KEYS[5]) or '0') >= key_budget then
    return {5, 0, 0, 0}
end
local tokens = 0
local token_limit = tonumber(ARGV[3])
local reserve = tonumber(ARGV[7])
if token_limit >= 0 then
    tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
    if tokens >= token_limit or tokens + reserve > token_limit then
        return {1, 0, tokens, 0}
    end
end
local key_rpm = tonumber(ARGV[13])
local key_tpm = tonumber(ARGV[14])
local key_reserve = tonumber(ARGV[15])
if key_tpm >= 0 then
    local key_tokens = tonumber(redis.call('GET', KEYS[7]) or '0')
    if key_tokens >= key_tpm or key_tokens + key_reserve > key_tpm then
        return {6, 0, tokens, 0}
    end
end
if key_rpm >= 0 and tonumber(redis.call('GET', KEYS[6]) or '0') >= key_rpm then
    return {7, 0, tokens, 0}
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
    local now = tonumber(ARGV[9])
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    streams = redis.call('ZCARD', KEYS[3])
    if streams >= tonumber(ARGV[5]) then
        return {3, count, tokens, streams}
    end
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[10])
    redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[6])) + 1)
    streams = streams + 1
end
if token_limit >= 0 and reserve > 0 then
    if redis.call('INCRBY', KEYS[2], reserve) == reserve then
        redis.call('EXPIRE', KEYS[2], ARGV[8])
    end
    tokens = tokens + reserve
end
if key_rpm >= 0 and redis.call('INCR', KEYS[6]) == 1 then
    redis.call('EXPIRE', KEYS[6], ARGV[1])
end
if key_tpm >= 0 and key_reserve > 0 then
    if redis.call('INCRBY', KEYS[7], key_reserve) == key_reserve then
        redis.call('EXPIRE', KEYS[7], ARGV[8])
    end
end
return {0, count, tokens, streams}
"""

# KEYS: tokens counter of the current minute (or ""), stream leases, the month's spend of
# the org and of the key (or ""), the key's own tokens counter (or "").
# ARGV: tokens to add (negative: a reservation settled lower), tokens ttl, lease id ("": none),
# spend units to add (the request's cost), spend ttl, tokens to add to the key's own counter.
_SETTLE = """
local spend = tonumber(ARGV[4])
if spend > 0 then
    for index = 3, 4 do
        if KEYS[index] ~= '' and redis.call('INCRBY', KEYS[index], ARGV[4]) == spend then
            redis.call('EXPIRE', KEYS[index], ARGV[5])
        end
    end
end
local function add_tokens(counter, delta)
    if delta ~= 0 and counter ~= '' then
        local total = redis.call('INCRBY', counter, delta)
        if total == delta then
            redis.call('EXPIRE', counter, ARGV[2])
        end
        if total < 0 then
            redis.call('SET', counter, 0, 'KEEPTTL')
        end
    end
end
add_tokens(KEYS[1], tonumber(ARGV[1]))
add_tokens(KEYS[5], tonumber(ARGV[6]))
if ARGV[3] ~= '' then
    redis.call('ZREM', KEYS[2], ARGV[3])
end
return 0
"""

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def mux() -> redis_mux.Multiplexer:
    """The event loop's multiplexed connection: admissions, renewals, settles and the records'
    hand-off, the commands every request sends (:mod:`pendra_console.redis_mux`)."""
    return redis_mux.for_loop(hot.REDIS_URL)


def _client() -> aioredis.Redis:
    """One connection pool per event loop (a uvicorn process has one loop), for what is not on
    every request's path (the in-flight counts the console shows)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A bounded pool that waits for a free connection rather than failing a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            hot.REDIS_URL, max_connections=128, timeout=1, socket_timeout=1, socket_connect_timeout=1
        )
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


client = _client


_ADMIT_SCRIPT = Script(_ADMIT)
_RENEW_SCRIPT = Script(LEASE_RENEW)
SETTLE_SCRIPT = Script(_SETTLE)


async def admit(
    *,
    org_id: int,
    kind: str,
    streaming: bool,
    bound: TokenBound = NO_TOKENS,
    key_id: int | None = None,
    key: KeyLimits | None = None,
) -> Admission:
    """:func:`apps.plans.limits.admit`, counted in one round trip; same answers, same headers."""
    if not hot.REDIS_URL:
        admit_sync = functools.partial(
            limits.admit, org_id=org_id, kind=kind, streaming=streaming, bound=bound, key_id=key_id, key=key
        )
        return await run_db(admit_sync)
    plan = await plan_for_org_async(org_id)
    if (refusal := never_fits(plan, kind, bound) or key_never_fits(key, kind, bound)) is not None:
        return refusal
    subject = org_subject(org_id)
    end = window_end(subject)
    limit = request_limit(plan, kind)
    tokens = token_limit(plan, kind)
    token_counter = tokens_key(kind, subject, end)
    reserve = reservation(plan, kind, bound)
    lease = new_lease_id() if streaming else ""
    org_spend, key_spend = spend_keys(org_id, key_id)
    org_budget, key_budget = budgets_for(plan, key_id)
    key_rpm = key.rpm if key is not None else None
    key_tpm = key.tpm_for(kind) if key is not None else None
    key_reserve = key_reservation(key, kind, bound)
    try:
        verdict, count, used, _ = await batched(
            mux(),
            _ADMIT_SCRIPT,
            7,
            cache_key(request_key(kind, subject, limit, end)),
            cache_key(token_counter) if token_counter is not None else "",
            cache_key(leases_key(org_id)),
            cache_key(org_spend),
            cache_key(key_spend) if key_spend else "",
            cache_key(key_requests_key(key.key_id, key_rpm, end)) if key and key_rpm is not None else "",
            cache_key(key_tokens_key(key.key_id, end)) if key and key_tpm is not None else "",
            WINDOW_SECONDS + COUNTER_FUDGE_SECONDS,
            limit,
            tokens if tokens is not None else -1,
            "1" if streaming else "0",
            plan.concurrent_streams,
            lease_seconds(),
            reserve,
            end - int(time.time()) + COUNTER_FUDGE_SECONDS,
            repr(time.time()),
            lease,
            org_budget,
            key_budget,
            key_rpm if key_rpm is not None else -1,
            key_tpm if key_tpm is not None else -1,
            key_reserve,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)
        return allowed_unchecked(kind)
    outage.recovered()
    counted = Counted(
        Verdict(int(verdict)),
        requests=int(count),
        tokens=int(used),
        reserved=reserve,
        window_end=end,
        lease=lease,
        key_reserved=key_reserve,
    )
    return decide(plan=plan, kind=kind, subject=subject, counted=counted, key_id=key_id, key=key)


async def renew(*, org_id: int, lease: str) -> None:
    """:func:`apps.plans.limits.renew`: the stream's lease lasts another lease from now."""
    if not hot.REDIS_URL:
        await run_db(functools.partial(limits.renew, org_id=org_id, lease=lease))
        return
    try:
        await batched(mux(), _RENEW_SCRIPT, 1, cache_key(leases_key(org_id)), repr(time.time()), lease_seconds(), lease)
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)


class LeaseKeeper:
    """Renews a stream's lease every third of a lease until :meth:`cancel` (when the stream's request ends).

    A timer, not a task, until a renewal is due: most streams end before their first one, and
    then keeping the lease cost a timer, where a sleeping task and its cancellation cost each
    stream more than the rest of its metering (bench/README.md).
    """

    __slots__ = ("_handle", "_lease", "_org_id", "_renewal", "_stopped")

    def __init__(self, *, org_id: int, lease: str) -> None:
        self._org_id, self._lease = org_id, lease
        self._stopped = False
        self._renewal: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(lease_seconds() / 3, self._renew)

    def _renew(self) -> None:
        self._renewal = asyncio.ensure_future(renew(org_id=self._org_id, lease=self._lease))
        self._renewal.add_done_callback(self._renewed)

    def _renewed(self, renewal: asyncio.Task[None]) -> None:
        if self._stopped or renewal.cancelled():
            return
        if (exc := renewal.exception()) is not None:  # renew() absorbs Redis's errors: a bug, logged once
            logger.error("renewing a stream's lease failed, not renewed again: %r", exc)
            return
        self._handle = asyncio.get_running_loop().call_later(lease_seconds() / 3, self._renew)

    def cancel(self) -> None:
        self._stopped = True
        self._handle.cancel()
        if self._renewal is not None and not self._renewal.done():
            self._renewal.cancel()


async def settle(
    *, org_id: int, kind: str, tokens: int, admission: Admission, key_id: int | None = None, spend: int = 0
) -> None:
    """:func:`apps.plans.limits.settle` in one round trip: the reservation becomes the usage, the lease
    goes, the request's cost (``spend``, in spend units) is added to the month's spend of the org and key."""
    if not hot.REDIS_URL:
        settle_sync = functools.partial(
            limits.settle, org_id=org_id, kind=kind, tokens=tokens, admission=admission, key_id=key_id, spend=spend
        )
        await run_db(settle_sync)
        return
    arguments = settle_arguments(
        org_id=org_id, kind=kind, tokens=tokens, admission=admission, key_id=key_id, spend=spend
    )
    if arguments is None:
        return
    try:
        await batched(mux(), SETTLE_SCRIPT, *arguments)
    except (RedisError, OSError, TimeoutError) as exc:
        outage.failed(exc)


def settle_arguments(
    *, org_id: int, kind: str, tokens: int, admission: Admission, key_id: int | None = None, spend: int = 0
) -> tuple[Any, ...] | None:
    """:data:`SETTLE_SCRIPT`'s arguments for :func:`settle`, for a caller that sends it with other
    commands (the records' hand-off); None when there is nothing to settle. Redis back end only."""
    subject = org_subject(org_id)
    end = window_end(subject)
    token_counter = tokens_key(kind, subject, end)
    delta = settle_delta(admission=admission, tokens=max(0, tokens), end=end) if token_counter is not None else 0
    key_counter = key_tokens_key(admission.key_tokens_id, end) if admission.key_tokens_id else None
    key_delta = (
        settle_delta(admission=admission, tokens=max(0, tokens), end=end, reserved=admission.key_reserved)
        if key_counter is not None
        else 0
    )
    if delta == 0 and key_delta == 0 and not admission.lease and spend <= 0:
        return None
    org_spend, key_spend = spend_keys(org_id, key_id)
    return (
        5,
        cache_key(token_counter) if token_counter is not None else "",
        cache_key(leases_key(org_id)),
        cache_key(org_spend),
        cache_key(key_spend) if key_spend else "",
        cache_key(key_counter) if key_counter is not None else "",
        delta,
        end - int(time.time()) + COUNTER_FUDGE_SECONDS,
        admission.lease,
        max(0, spend),
        SPEND_TTL_SECONDS,
        key_delta,
    )


def spawn_settle(**kwargs: Any) -> None:
    """Settle after the response without making the client wait; keeps the task referenced."""
    task = asyncio.ensure_future(settle(**kwargs))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()
