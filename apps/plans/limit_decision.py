"""The rate-limit decision, written once: buckets, their order, counter keys, windows, the 429.

Two counter back ends feed it: :mod:`apps.plans.limits` counts with Django's cache API
(the embedded default without Redis, and the admin API's ``api`` bucket through
django-ratelimit), :mod:`apps.plans.limits_async` counts every bucket of a request in one
Lua script on Redis (the gateway). Each back end only counts; what the counts mean —
which bucket refused, the ``detail``, the ``x-ratelimit-*`` and ``Retry-After`` headers —
is :func:`decide`'s.

Buckets, each per organisation (never per IP or client header, so a spoofed
``X-Forwarded-For`` changes nothing), checked in this order:

1. tokens per minute ``chat_tokens``, ``embeddings_tokens``: refused while the minute's
   tokens are already at or over the limit (the request is then not counted);
2. requests per minute ``chat``, ``embeddings``, ``images``, ``audio``, ``api``: counted,
   refused past the limit;
3. ``streams``: streams open at once, taken on admit, given back on settle; the counter
   expires :data:`STREAM_SLOT_TTL` seconds after it was created, so slots leaked by a
   crashed process come back.

Windows are fixed minutes, offset per subject by a hash of its key (so every org's
minute does not roll over at once), the same arithmetic django-ratelimit uses; the
counter keys are this module's own (:func:`request_key`, :func:`tokens_key`,
:func:`streams_key`) and include the limit for requests, so a plan change starts
counting against the new limit at once.

If the cache is unreachable the buckets fail open (an outage of Redis must not take
inference down) and :data:`outage` says so once per incident; console sign-in
throttling (``apps.console.auth_views``) fails closed instead.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field

from apps.plans.selectors import PlanLimits

logger = logging.getLogger("pendra.limits")

WINDOW_SECONDS = 60
STREAM_SLOT_TTL = 15 * 60
# Counters are kept this long after their minute ends, so a late settle still finds its counter.
COUNTER_FUDGE_SECONDS = 5

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


def org_subject(org_id: int) -> str:
    return f"org:{org_id}"


def window_end(subject: str) -> int:
    """End of the subject's current minute (epoch seconds), offset per subject."""
    now = int(time.time())
    end = now - (now % WINDOW_SECONDS) + (zlib.crc32(subject.encode()) % WINDOW_SECONDS)
    return end + WINDOW_SECONDS if end < now else end


def seconds_left(end: int) -> int:
    return max(1, end - int(time.time()))


def request_key(kind: str, subject: str, limit: int, end: int) -> str:
    return f"plans:{kind}:{subject}:{limit}:{end}"


def tokens_key(kind: str, subject: str, end: int) -> str | None:
    """The tokens counter of ``kind``'s minute, or None for a kind without a tokens bucket."""
    bucket = TOKEN_BUCKETS.get(kind)
    return None if bucket is None else f"plans:{bucket[0]}:{subject}:{end}"


def streams_key(org_id: int) -> str:
    return f"plans:streams:org:{org_id}"


def request_limit(plan: PlanLimits, kind: str) -> int:
    return int(getattr(plan, REQUEST_BUCKETS[kind]))


def token_limit(plan: PlanLimits, kind: str) -> int | None:
    bucket = TOKEN_BUCKETS.get(kind)
    return None if bucket is None else int(getattr(plan, bucket[1]))


class Verdict(enum.IntEnum):
    """What a back end found, in bucket order; the Lua script returns these numbers."""

    ALLOWED = 0
    TOKENS_USED_UP = 1
    REQUESTS_USED_UP = 2
    TOO_MANY_STREAMS = 3


@dataclass(frozen=True, slots=True)
class Counted:
    """A back end's answer for one request: the verdict and the counts it saw."""

    verdict: Verdict
    requests: int  # requests counted this minute, this one included (0 when not counted)
    tokens: int  # tokens used this minute before this request
    requests_reset: int | None = None  # seconds left in the request window, when the back end knows better


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    bucket: str  # the bucket that refused, or the request's bucket when allowed
    detail: str
    retry_after: int  # seconds, >= 1 when refused
    headers: dict[str, str] = field(default_factory=dict)


def allowed_unchecked(kind: str) -> Admission:
    """The answer while the counters are unreachable (fail open, no headers to promise)."""
    return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers={})


def decide(*, plan: PlanLimits, kind: str, subject: str, counted: Counted) -> Admission:
    """The admission, its 429 detail and its headers, from what the back end counted."""
    end = window_end(subject)
    reset = seconds_left(end)
    headers: dict[str, str] = {}
    if counted.verdict != Verdict.TOKENS_USED_UP:
        limit = request_limit(plan, kind)
        request_reset = counted.requests_reset if counted.requests_reset is not None else reset
        headers = {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(max(0, limit - counted.requests)),
            "x-ratelimit-reset-requests": f"{request_reset}s",
        }
    tokens = token_limit(plan, kind)
    if tokens is not None:
        headers |= {
            "x-ratelimit-limit-tokens": str(tokens),
            "x-ratelimit-remaining-tokens": str(max(0, tokens - counted.tokens)),
            "x-ratelimit-reset-tokens": f"{reset}s",
        }
    if counted.verdict == Verdict.TOKENS_USED_UP and tokens is not None:
        return _refusal(TOKEN_BUCKETS[kind][0], f"{tokens} tokens/minute", plan, reset, headers)
    if counted.verdict == Verdict.REQUESTS_USED_UP:
        request_reset = counted.requests_reset if counted.requests_reset is not None else reset
        return _refusal(kind, f"{request_limit(plan, kind)} requests/minute", plan, request_reset, headers)
    if counted.verdict == Verdict.TOO_MANY_STREAMS:
        return _refusal(STREAMS_BUCKET, f"{plan.concurrent_streams} concurrent streams", plan, 1, headers)
    return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers=headers)


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
