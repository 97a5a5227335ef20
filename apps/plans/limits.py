"""The synchronous counter back end: Django's cache API, and django-ratelimit for the admin API.

:func:`admit`, :func:`renew` and :func:`settle` count a ``/v1`` request's buckets with
Django's cache (``add``/``incr``/``get``), under :mod:`apps.plans.limit_decision`'s keys
and windows, and hand the counts to its :func:`~apps.plans.limit_decision.decide`.
Stream leases are the sorted set that :mod:`apps.plans.limits_async` uses when the cache
is Redis (:class:`pendra_console.cache.RedisCache`), and slot keys taken with ``add``
in any other cache. The gateway uses
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

import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django_ratelimit.core import get_usage
from django_ratelimit.exceptions import Ratelimited
from redis.exceptions import RedisError

from apps.plans.key_limits import KeyLimits, key_never_fits, key_requests_key, key_reservation, key_tokens_key
from apps.plans.limit_decision import (
    COUNTER_FUDGE_SECONDS,
    INFERENCE_KINDS,
    NO_TOKENS,
    REQUEST_BUCKETS,
    STREAMS_BUCKET,
    TOKEN_BUCKETS,
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
    slot_key,
    spend_keys,
    token_limit,
    tokens_key,
    window_end,
)
from apps.plans.pricing import SPEND_TTL_SECONDS
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


def _add_tokens(key: str, delta: int, ttl: int) -> None:
    """Add ``delta`` (negative when a reservation is settled lower) to a tokens counter, never below 0."""
    if delta == 0:
        return
    if not cache.add(key, max(0, delta), ttl):
        try:
            if cache.incr(key, delta) < 0:
                cache.set(key, 0, ttl)
        except ValueError:
            cache.add(key, max(0, delta), ttl)  # it expired between our add and incr


# --- Stream leases ---------------------------------------------------------------


def _lease_ttl() -> int:
    return max(1, math.ceil(lease_seconds()))


def _sorted_set() -> Any:
    """The cache's lease methods when it keeps sorted sets (Redis), else None (slot keys)."""
    return cache if hasattr(cache, "lease_take") else None


def _take_lease(org_id: int, limit: int) -> str:
    """A lease on one of the org's ``limit`` stream slots, or "" when all are held."""
    lease_id = new_lease_id()
    if (leases := _sorted_set()) is not None:
        taken = leases.lease_take(
            leases_key(org_id), lease_id=lease_id, now=time.time(), seconds=lease_seconds(), limit=limit
        )
        return lease_id if taken else ""
    for slot in range(limit):
        if cache.add(slot_key(org_id, slot), lease_id, _lease_ttl()):  # atomic in every cache
            return f"{slot}.{lease_id}"
    return ""


def _slot_of(org_id: int, lease: str) -> tuple[str, str]:
    slot, _, lease_id = lease.partition(".")
    return slot_key(org_id, int(slot)), lease_id


def renew(*, org_id: int, lease: str) -> None:
    """Keep a running stream's slot for another lease from now (only if it still holds it)."""
    try:
        if (leases := _sorted_set()) is not None:
            leases.lease_renew(leases_key(org_id), lease_id=lease, now=time.time(), seconds=lease_seconds())
            return
        key, lease_id = _slot_of(org_id, lease)
        if cache.get(key) == lease_id:
            cache.touch(key, _lease_ttl())
    except _CACHE_ERRORS as exc:
        outage.failed(exc)


def _release_lease(org_id: int, lease: str) -> None:
    if (leases := _sorted_set()) is not None:
        leases.lease_release(leases_key(org_id), lease_id=lease)
        return
    key, lease_id = _slot_of(org_id, lease)
    if cache.get(key) == lease_id:  # a lease that lapsed may be someone else's slot now
        cache.delete(key)


def _open_streams(org_id: int, plan: PlanLimits) -> int:
    if (leases := _sorted_set()) is not None:
        return int(leases.lease_count(leases_key(org_id), now=time.time()))
    return len(cache.get_many([slot_key(org_id, slot) for slot in range(plan.concurrent_streams)]))


# --- Admission and settling ---------------------------------------------------------


def _budget_spent(org_id: int, key_id: int | None, plan: PlanLimits) -> Verdict | None:
    """The hard budget (the org's, then the key's) already spent this month, if any."""
    org_budget, key_budget = budgets_for(plan, key_id)
    org_spend, key_spend = spend_keys(org_id, key_id)
    if org_budget >= 0 and int(cache.get(org_spend, 0)) >= org_budget:
        return Verdict.ORG_BUDGET_SPENT
    if key_budget >= 0 and key_spend and int(cache.get(key_spend, 0)) >= key_budget:
        return Verdict.KEY_BUDGET_SPENT
    return None


def _key_verdict(key: KeyLimits | None, kind: str, end: int, key_reserve: int) -> Verdict | None:
    """The key's own buckets, checked before the org's are counted: a key's refusal costs the org nothing."""
    key_tpm = key.tpm_for(kind) if key is not None else None
    if key is not None and key_tpm is not None:
        key_used = int(cache.get(key_tokens_key(key.key_id, end), 0))
        if key_used >= key_tpm or key_used + key_reserve > key_tpm:
            return Verdict.KEY_TOKENS_USED_UP
    if (
        key is not None
        and key.rpm is not None
        and int(cache.get(key_requests_key(key.key_id, key.rpm, end), 0)) >= key.rpm
    ):
        return Verdict.KEY_REQUESTS_USED_UP
    return None


def _count(
    *,
    org_id: int,
    kind: str,
    streaming: bool,
    plan: PlanLimits,
    reserve: int,
    key_id: int | None = None,
    key: KeyLimits | None = None,
    key_reserve: int = 0,
) -> Counted:
    """The buckets in :mod:`apps.plans.limit_decision`'s order, one cache call at a time."""
    subject = org_subject(org_id)
    end = window_end(subject)
    if (spent := _budget_spent(org_id, key_id, plan)) is not None:
        return Counted(spent, requests=0, tokens=0, window_end=end)
    used = 0
    token_counter = tokens_key(kind, subject, end)
    tokens = token_limit(plan, kind)
    if token_counter is not None and tokens is not None:
        used = int(cache.get(token_counter, 0))
        if used >= tokens or used + reserve > tokens:
            return Counted(Verdict.TOKENS_USED_UP, requests=0, tokens=used, window_end=end)
    if (key_verdict := _key_verdict(key, kind, end, key_reserve)) is not None:
        return Counted(key_verdict, requests=0, tokens=used, window_end=end)
    limit = request_limit(plan, kind)
    count = _incr_from_zero(request_key(kind, subject, limit, end), WINDOW_SECONDS + COUNTER_FUDGE_SECONDS)
    if count > limit:
        return Counted(Verdict.REQUESTS_USED_UP, requests=count, tokens=used, window_end=end)
    lease = ""
    if streaming:
        lease = _take_lease(org_id, plan.concurrent_streams)
        if not lease:
            return Counted(Verdict.TOO_MANY_STREAMS, requests=count, tokens=used, window_end=end)
    if token_counter is not None and reserve > 0:
        _add_tokens(token_counter, reserve, end - int(time.time()) + COUNTER_FUDGE_SECONDS)
        used += reserve
    if key is not None and key.rpm is not None:
        _incr_from_zero(key_requests_key(key.key_id, key.rpm, end), WINDOW_SECONDS + COUNTER_FUDGE_SECONDS)
    if key is not None and key.tpm_for(kind) is not None and key_reserve > 0:
        _add_tokens(key_tokens_key(key.key_id, end), key_reserve, end - int(time.time()) + COUNTER_FUDGE_SECONDS)
    return Counted(
        Verdict.ALLOWED,
        requests=count,
        tokens=used,
        reserved=reserve if token_counter else 0,
        window_end=end,
        lease=lease,
        key_reserved=key_reserve,
    )


def admit(
    *,
    org_id: int,
    kind: str,
    streaming: bool,
    bound: TokenBound = NO_TOKENS,
    key_id: int | None = None,
    key: KeyLimits | None = None,
) -> Admission:
    """Count one inference request of ``kind`` for the org; refuse it if a bucket is used up.

    ``bound`` is the request's most tokens, reserved in its tokens bucket. Refusals raise
    nothing: the caller answers ``allowed=False`` with ``status`` (429, or 400 for a
    request that can never fit) carrying ``detail`` and ``headers``. Call :func:`settle`
    with the admission after every admitted request, and :func:`renew` while a stream runs.
    """
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"unknown request kind {kind!r}; expected one of {', '.join(INFERENCE_KINDS)}")
    plan = plan_for_org(org_id)
    if (refusal := never_fits(plan, kind, bound) or key_never_fits(key, kind, bound)) is not None:
        return refusal
    try:
        counted = _count(
            org_id=org_id,
            kind=kind,
            streaming=streaming,
            plan=plan,
            reserve=reservation(plan, kind, bound),
            key_id=key_id,
            key=key,
            key_reserve=key_reservation(key, kind, bound),
        )
    except _CACHE_ERRORS as exc:
        outage.failed(exc)
        return allowed_unchecked(kind)
    outage.recovered()
    return decide(plan=plan, kind=kind, subject=org_subject(org_id), counted=counted, key_id=key_id, key=key)


def settle(
    *, org_id: int, kind: str, tokens: int, admission: Admission, key_id: int | None = None, spend: int = 0
) -> None:
    """After an admitted request: its reservation becomes the worker's reported tokens, its lease goes,
    its cost (``spend``, in spend units) is added to the month's spend of the org and the key."""
    try:
        if admission.lease:
            _release_lease(org_id, admission.lease)
        if spend > 0:
            for counter in spend_keys(org_id, key_id):
                if counter:
                    _add_tokens(counter, spend, SPEND_TTL_SECONDS)
        subject = org_subject(org_id)
        end = window_end(subject)
        counter = tokens_key(kind, subject, end)
        ttl = end - int(time.time()) + COUNTER_FUDGE_SECONDS
        if counter is not None:
            _add_tokens(counter, settle_delta(admission=admission, tokens=max(0, tokens), end=end), ttl)
        if admission.key_tokens_id:
            key_delta = settle_delta(
                admission=admission, tokens=max(0, tokens), end=end, reserved=admission.key_reserved
            )
            _add_tokens(key_tokens_key(admission.key_tokens_id, end), key_delta, ttl)
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
        use[STREAMS_BUCKET] = _open_streams(org_id, plan)
    except _CACHE_ERRORS as exc:
        outage.failed(exc)
        return {}
    return use
