"""The synchronous counter back end: Django's cache API, and django-ratelimit for the admin API.

:func:`admit` and :func:`settle` count a ``/v1`` request's buckets with Django's cache
(``add``/``incr``/``get``), under :mod:`apps.plans.limit_decision`'s keys and windows,
and hand the counts to its :func:`~apps.plans.limit_decision.decide`. The gateway uses
them only without Redis (the embedded default, through ``run_db``); with Redis it uses
:mod:`apps.plans.limits_async`, which counts the same keys in one round trip, so either
path sees the other's counts.

The admin API's ``api`` bucket (:func:`admit_api`, through
:class:`apps.plans.throttling.ApiRateThrottle`) is counted by django-ratelimit's public
``get_usage``. Its public API cannot express what the gateway needs: it builds its cache
key and window internally (no public way to name the counter a Lua script must count),
counts one bucket per call (a chat request needs tokens, requests and streams decided
atomically), and only synchronously. So django-ratelimit counts the admin API only.

The counters live in Django's default cache: Redis whenever ``REDIS_URL`` is set, so
every process and machine shares them and a limit does not multiply with replicas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache
from django_ratelimit.core import get_usage
from django_ratelimit.exceptions import Ratelimited
from redis.exceptions import RedisError

from apps.plans.limit_decision import (
    COUNTER_FUDGE_SECONDS,
    INFERENCE_KINDS,
    REQUEST_BUCKETS,
    STREAM_SLOT_TTL,
    STREAMS_BUCKET,
    TOKEN_BUCKETS,
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
from apps.plans.selectors import PlanLimits, default_plan_limits, plan_for_org

# What an outage looks like through Django's cache API (Redis refusing or timing out).
_CACHE_ERRORS = (RedisError, OSError)


class CacheUnavailable(Exception):
    """The cache answered, but not with a count (django-ratelimit's "count is None")."""


class RateLimitExceeded(Ratelimited):
    """Raised on the admin API; ``pendra_console.errors`` maps Ratelimited to a 429 using these."""

    def __init__(self, admission: Admission) -> None:
        super().__init__(admission.detail)
        self.admission = admission
        self.headers = admission.headers


@dataclass(frozen=True, slots=True)
class _Subject:
    """What django-ratelimit's ``key`` and ``rate`` callables receive in place of an HttpRequest."""

    key: str
    limit: int


def _subject_key(group: str, subject: _Subject) -> str:
    return subject.key


def _subject_rate(group: str, subject: _Subject) -> tuple[int, int]:
    # A tuple is taken as (limit, period) as is. The limit is part of django-ratelimit's
    # cache key, so a plan change starts counting against the new limit at once.
    return subject.limit, WINDOW_SECONDS


def _incr_from_zero(key: str, ttl: int) -> int:
    cache.add(key, 0, ttl)
    try:
        return int(cache.incr(key))
    except ValueError:
        # It expired between add and incr: this is the window's first count.
        cache.add(key, 1, ttl)
        return 1


def _close_stream(org_id: int) -> None:
    key = streams_key(org_id)
    try:
        remaining = int(cache.decr(key))
    except ValueError:
        return  # the counter expired (its safety TTL): nothing left to release
    if remaining < 0:
        # Released after the counter expired and was re-created: never let it go negative.
        cache.incr(key, -remaining)


def _count(*, org_id: int, kind: str, streaming: bool, plan: PlanLimits) -> Counted:
    """The buckets in :mod:`apps.plans.limit_decision`'s order, one cache call at a time."""
    subject = org_subject(org_id)
    end = window_end(subject)
    used = 0
    token_counter = tokens_key(kind, subject, end)
    tokens = token_limit(plan, kind)
    if token_counter is not None and tokens is not None:
        used = int(cache.get(token_counter, 0))
        if used >= tokens:
            return Counted(Verdict.TOKENS_USED_UP, requests=0, tokens=used)
    limit = request_limit(plan, kind)
    count = _incr_from_zero(request_key(kind, subject, limit, end), WINDOW_SECONDS + COUNTER_FUDGE_SECONDS)
    if count > limit:
        return Counted(Verdict.REQUESTS_USED_UP, requests=count, tokens=used)
    if streaming and _incr_from_zero(streams_key(org_id), STREAM_SLOT_TTL) > plan.concurrent_streams:
        _close_stream(org_id)
        return Counted(Verdict.TOO_MANY_STREAMS, requests=count, tokens=used)
    return Counted(Verdict.ALLOWED, requests=count, tokens=used)


def admit(*, org_id: int, kind: str, streaming: bool) -> Admission:
    """Count one inference request of ``kind`` for the org; refuse it if a bucket is used up.

    Refusals raise nothing: the caller answers ``allowed=False`` with a 429 carrying
    ``detail`` and ``headers``. Call :func:`settle` after every admitted request.
    """
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"unknown request kind {kind!r}; expected one of {', '.join(INFERENCE_KINDS)}")
    plan = plan_for_org(org_id)
    try:
        counted = _count(org_id=org_id, kind=kind, streaming=streaming, plan=plan)
    except _CACHE_ERRORS as exc:
        outage.failed(exc)
        return allowed_unchecked(kind)
    outage.recovered()
    return decide(plan=plan, kind=kind, subject=org_subject(org_id), counted=counted)


def settle(*, org_id: int, kind: str, tokens: int, streaming: bool) -> None:
    """After an admitted request: add the worker's reported tokens, release the stream slot."""
    try:
        if streaming:
            _close_stream(org_id)
        subject = org_subject(org_id)
        end = window_end(subject)
        key = tokens_key(kind, subject, end)
        if key is not None and tokens > 0:
            ttl = end - int(time.time()) + COUNTER_FUDGE_SECONDS
            if not cache.add(key, tokens, ttl):
                try:
                    cache.incr(key, tokens)
                except ValueError:
                    cache.add(key, tokens, ttl)  # it expired between our add and incr
    except _CACHE_ERRORS as exc:
        outage.failed(exc)


def admit_api(*, org_id: int | None, user_id: int) -> Admission:
    """Count one admin-API request: per org for an org's key, per user for a console session."""
    plan = plan_for_org(org_id) if org_id is not None else default_plan_limits()
    subject = org_subject(org_id) if org_id is not None else f"user:{user_id}"
    try:
        usage = get_usage(
            _Subject(subject, plan.api_rpm),
            group="pendra.api",
            key=_subject_key,
            rate=_subject_rate,
            increment=True,
        )
        if usage is None or usage["time_left"] < 0:
            raise CacheUnavailable("the cache returned no count")
    except (*_CACHE_ERRORS, CacheUnavailable) as exc:
        outage.failed(exc)
        return allowed_unchecked("api")
    outage.recovered()
    verdict = Verdict.REQUESTS_USED_UP if usage["should_limit"] else Verdict.ALLOWED
    counted = Counted(verdict, requests=usage["count"], tokens=0, requests_reset=max(1, usage["time_left"]))
    return decide(plan=plan, kind="api", subject=subject, counted=counted)


def current_use(*, org_id: int) -> dict[str, int]:
    """What the org has used of each bucket in its current minute (streams: open now), counted nowhere.

    Read from the same counters :func:`admit` judges by, so the console shows what the next
    request meets. Empty when the cache is unreachable: the page says "unknown", not 0.
    """
    plan = plan_for_org(org_id)
    subject = org_subject(org_id)
    end = window_end(subject)
    use: dict[str, int] = {}
    try:
        for kind in REQUEST_BUCKETS:
            if kind == "api":
                usage = get_usage(
                    _Subject(subject, plan.api_rpm),
                    group="pendra.api",
                    key=_subject_key,
                    rate=_subject_rate,
                    increment=False,
                )
                use[kind] = int(usage["count"]) if usage else 0
            else:
                use[kind] = int(cache.get(request_key(kind, subject, request_limit(plan, kind), end), 0))
        for kind, (bucket, _) in TOKEN_BUCKETS.items():
            use[bucket] = int(cache.get(tokens_key(kind, subject, end) or "", 0))
        use[STREAMS_BUCKET] = max(0, int(cache.get(streams_key(org_id), 0)))
    except _CACHE_ERRORS as exc:
        outage.failed(exc)
        return {}
    return use
