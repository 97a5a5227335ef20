"""The rate-limit core: per-organisation buckets, scaled to the org's plan, counted in the shared cache.

Synchronous on purpose (django-ratelimit and Django's cache are): the gateway calls
:func:`admit` and :func:`settle` through one ``sync_to_async(thread_sensitive=False)``
hop per request, the admin API through :class:`apps.plans.throttling.ApiRateThrottle`.

Buckets, each per organisation (never per IP or client header, so a spoofed
``X-Forwarded-For`` changes nothing):

- requests per minute ``chat``, ``embeddings``, ``images``, ``audio``, ``api``: counted
  with django-ratelimit's ``get_usage`` (fixed one-minute windows, offset per org);
- tokens per minute ``chat_tokens``, ``embeddings_tokens``: the worker's reported usage
  added after each success with atomic ``add``/``incr``; a request is refused while
  the minute's tokens are already at or over the limit;
- ``streams``: streams open at once, ``incr`` on admit and ``decr`` on release; the
  counter expires :data:`STREAM_SLOT_TTL` seconds after it was created, so slots
  leaked by a crashed process come back.

The counters live in Django's default cache: Redis whenever ``REDIS_URL`` is set, so
every process and machine shares them and a limit does not multiply with replicas.

If the cache is unreachable these buckets fail open (an outage of Redis must not take
inference down) and say so once per incident with ``logger.error``; console sign-in
throttling (``apps.console.auth_views``) fails closed instead.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field

from django.core.cache import cache
from django_ratelimit.core import get_usage
from django_ratelimit.exceptions import Ratelimited
from redis.exceptions import RedisError

from apps.plans.selectors import PlanLimits, default_plan_limits, plan_for_org

logger = logging.getLogger("pendra.limits")

WINDOW_SECONDS = 60
STREAM_SLOT_TTL = 15 * 60
# Kept this long after their minute ends so a late settle() still finds its counter.
_TOKEN_KEY_FUDGE = 5

# Request kind -> the plan field holding its requests-per-minute limit.
REQUEST_BUCKETS: dict[str, str] = {
    "chat": "chat_rpm",
    "embeddings": "embeddings_rpm",
    "images": "images_rpm",
    "audio": "audio_rpm",
    "api": "api_rpm",
}
# Request kind -> (its tokens bucket, the plan field holding its tokens-per-minute limit).
TOKEN_BUCKETS: dict[str, tuple[str, str]] = {
    "chat": ("chat_tokens", "chat_tpm"),
    "embeddings": ("embeddings_tokens", "embeddings_tpm"),
}
STREAMS_BUCKET = "streams"
INFERENCE_KINDS = ("chat", "embeddings", "images", "audio")

# What a cache outage looks like through Django's cache API (Redis refusing or timing out).
_CACHE_ERRORS = (RedisError, OSError)


class CacheUnavailable(Exception):
    """The cache answered, but not with a count (django-ratelimit's "count is None")."""


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    bucket: str  # the bucket that refused, or the request's bucket when allowed
    detail: str
    retry_after: int  # seconds, >= 1 when refused
    headers: dict[str, str] = field(default_factory=dict)


class RateLimitExceeded(Ratelimited):
    """Raised on the admin API; ``pendra_console.errors`` maps Ratelimited to a 429 using these."""

    def __init__(self, admission: Admission) -> None:
        super().__init__(admission.detail)
        self.admission = admission
        self.headers = admission.headers


class _Outage:
    """Logs an unreachable cache once per incident and its recovery once, not once per request."""

    def __init__(self) -> None:
        self.down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down:
                return
            self.down = True
        logger.error(
            "Rate-limit cache unreachable (%s: %s): request, token and stream limits are NOT enforced "
            "(fail open) and console sign-in is refused (fail closed) until it is back",
            type(exc).__name__,
            exc,
        )

    def recovered(self) -> None:
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.warning("Rate-limit cache reachable again: limits are enforced")


outage = _Outage()


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


def _window_end(subject_key: str) -> int:
    """End of the current minute for this subject, with django-ratelimit's per-subject offset."""
    now = int(time.time())
    end = now - (now % WINDOW_SECONDS) + (zlib.crc32(subject_key.encode()) % WINDOW_SECONDS)
    return end + WINDOW_SECONDS if end < now else end


def _seconds_left(window_end: int) -> int:
    return max(1, window_end - int(time.time()))


def _tokens_key(bucket: str, subject_key: str, window_end: int) -> str:
    return f"plans:{bucket}:{subject_key}:{window_end}"


def _streams_key(org_id: int) -> str:
    return f"plans:streams:org:{org_id}"


def _refusal(bucket: str, limit_text: str, plan: PlanLimits, retry_after: int, headers: dict[str, str]) -> Admission:
    retry = f"retry in {retry_after} s" if bucket != STREAMS_BUCKET else "retry when one of them ends"
    detail = f'Rate limit exceeded for bucket "{bucket}" ({limit_text} on plan {plan.name}); {retry}'
    return Admission(
        allowed=False,
        bucket=bucket,
        detail=detail,
        retry_after=retry_after,
        headers={**headers, "Retry-After": str(retry_after), "x-ratelimit-bucket": bucket},
    )


def _count_request(kind: str, subject_key: str, limit: int) -> tuple[bool, dict[str, str], int]:
    """One request counted in django-ratelimit's bucket: (over the limit?, headers, seconds to reset)."""
    usage = get_usage(
        _Subject(subject_key, limit),
        group=f"pendra.{kind}",
        key=_subject_key,
        rate=_subject_rate,
        increment=True,
    )
    if usage is None or usage["time_left"] < 0:
        raise CacheUnavailable("the cache returned no count")
    reset = max(1, usage["time_left"])
    headers = {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(0, limit - usage["count"])),
        "x-ratelimit-reset-requests": f"{reset}s",
    }
    return bool(usage["should_limit"]), headers, reset


def _open_stream(org_id: int) -> int:
    key = _streams_key(org_id)
    cache.add(key, 0, STREAM_SLOT_TTL)
    return int(cache.incr(key))


def _close_stream(org_id: int) -> None:
    key = _streams_key(org_id)
    try:
        remaining = int(cache.decr(key))
    except ValueError:
        return  # the counter expired (its safety TTL): nothing left to release
    if remaining < 0:
        # Released after the counter expired and was re-created: never let it go negative.
        cache.incr(key, -remaining)


def _admit(*, org_id: int, kind: str, streaming: bool, plan: PlanLimits) -> Admission:
    subject_key = f"org:{org_id}"
    headers: dict[str, str] = {}
    token_bucket = TOKEN_BUCKETS.get(kind)
    if token_bucket is not None:
        bucket, limit_field = token_bucket
        token_limit: int = getattr(plan, limit_field)
        window_end = _window_end(subject_key)
        used = int(cache.get(_tokens_key(bucket, subject_key, window_end), 0))
        reset = _seconds_left(window_end)
        headers = {
            "x-ratelimit-limit-tokens": str(token_limit),
            "x-ratelimit-remaining-tokens": str(max(0, token_limit - used)),
            "x-ratelimit-reset-tokens": f"{reset}s",
        }
        if used >= token_limit:
            return _refusal(bucket, f"{token_limit} tokens/minute", plan, reset, headers)

    request_limit: int = getattr(plan, REQUEST_BUCKETS[kind])
    over, request_headers, reset = _count_request(kind, subject_key, request_limit)
    headers = {**request_headers, **headers}
    if over:
        return _refusal(kind, f"{request_limit} requests/minute", plan, reset, headers)

    if streaming and _open_stream(org_id) > plan.concurrent_streams:
        _close_stream(org_id)
        return _refusal(STREAMS_BUCKET, f"{plan.concurrent_streams} concurrent streams", plan, 1, headers)
    return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers=headers)


def admit(*, org_id: int, kind: str, streaming: bool) -> Admission:
    """Count one inference request of ``kind`` for the org; refuse it if a bucket is used up.

    Refusals raise nothing: the caller answers ``allowed=False`` with a 429 carrying
    ``detail`` and ``headers``. Call :func:`settle` after every admitted request.
    """
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"unknown request kind {kind!r}; expected one of {', '.join(INFERENCE_KINDS)}")
    plan = plan_for_org(org_id)
    try:
        admission = _admit(org_id=org_id, kind=kind, streaming=streaming, plan=plan)
    except (*_CACHE_ERRORS, CacheUnavailable) as exc:
        outage.failed(exc)
        return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers={})
    outage.recovered()
    return admission


def settle(*, org_id: int, kind: str, tokens: int, streaming: bool) -> None:
    """After an admitted request: add the worker's reported tokens, release the stream slot."""
    try:
        if streaming:
            _close_stream(org_id)
        token_bucket = TOKEN_BUCKETS.get(kind)
        if token_bucket is not None and tokens > 0:
            subject_key = f"org:{org_id}"
            window_end = _window_end(subject_key)
            key = _tokens_key(token_bucket[0], subject_key, window_end)
            ttl = window_end - int(time.time()) + _TOKEN_KEY_FUDGE
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
    subject_key = f"org:{org_id}" if org_id is not None else f"user:{user_id}"
    try:
        over, headers, reset = _count_request("api", subject_key, plan.api_rpm)
    except (*_CACHE_ERRORS, CacheUnavailable) as exc:
        outage.failed(exc)
        return Admission(allowed=True, bucket="api", detail="", retry_after=0, headers={})
    outage.recovered()
    if over:
        return _refusal("api", f"{plan.api_rpm} requests/minute", plan, reset, headers)
    return Admission(allowed=True, bucket="api", detail="", retry_after=0, headers=headers)


def current_use(*, org_id: int) -> dict[str, int]:
    """What the org has used of each bucket in its current minute (streams: open now), counted nowhere.

    Read from the same counters :func:`admit` judges by, so the console shows what the next
    request meets. Empty when the cache is unreachable: the page says "unknown", not 0.
    """
    plan = plan_for_org(org_id)
    subject_key = f"org:{org_id}"
    use: dict[str, int] = {}
    try:
        for kind, limit_field in REQUEST_BUCKETS.items():
            subject = _Subject(subject_key, getattr(plan, limit_field))
            usage = get_usage(subject, group=f"pendra.{kind}", key=_subject_key, rate=_subject_rate, increment=False)
            use[kind] = int(usage["count"]) if usage else 0
        window_end = _window_end(subject_key)
        for bucket, _ in TOKEN_BUCKETS.values():
            use[bucket] = int(cache.get(_tokens_key(bucket, subject_key, window_end), 0))
        use[STREAMS_BUCKET] = max(0, int(cache.get(_streams_key(org_id), 0)))
    except _CACHE_ERRORS as exc:
        outage.failed(exc)
        return {}
    return use
