"""The rate-limit decision, written once: buckets, their order, counter keys, windows, the 429.

Two counter back ends feed it: :mod:`apps.plans.limits` counts with Django's cache API
(the embedded default without Redis, and the admin API's ``api`` bucket through
django-ratelimit), :mod:`apps.plans.limits_async` counts every bucket of a request in one
Lua script on Redis (the gateway). Each back end only counts; what the counts mean —
which bucket refused, the ``detail``, the ``x-ratelimit-*`` and ``Retry-After`` headers —
is :func:`decide`'s.

Buckets, each per organisation (never per IP or client header, so a spoofed
``X-Forwarded-For`` changes nothing), checked in this order:

1. tokens per minute ``chat_tokens``, ``embeddings_tokens``: as OpenAI counts them, a
   request *reserves* its upper bound at admission (:class:`TokenBound`: the prompt's
   estimate plus ``max_tokens`` x ``n``, ``PENDRA_DEFAULT_MAX_TOKENS`` x ``n`` when it
   names none) and settling replaces the reservation with the tokens the worker reported
   (:func:`settle_delta`). It is refused while the minute cannot hold its reservation (the
   request is then neither counted nor reserved), so requests in flight cannot overspend
   the minute together; one whose bound exceeds the whole minute is refused before any
   counting with a 400 naming the bucket (:func:`never_fits`: waiting would never help);
2. requests per minute ``chat``, ``embeddings``, ``images``, ``audio``, ``api``: counted,
   refused past the limit;
3. ``streams``: streams open at once. Each stream holds a *lease* that lasts
   ``PENDRA_STREAM_LEASE_SECONDS``, renewed while the stream runs and given back on
   settle: a long stream keeps its slot however long it lasts, a slot whose process died
   comes back within one lease, and ending a stream can only free its own slot (a shared
   counter with an expiry did neither). With Redis the leases are a sorted set of lease
   ids scored by expiry (:func:`leases_key`); with another cache, ``concurrent_streams``
   slot keys taken with the cache's atomic ``add`` (:func:`slot_key`);
0. before all of them, ``budget``: a hard monthly budget of the org or of the request's key
   (carried in the plan snapshot, :class:`apps.plans.selectors.PlanLimits`). Spend is
   counted per org and per key and month (:func:`apps.plans.pricing.spend_key`) when a
   request is settled, so the request that spends the budget is answered and the one
   after it is refused, until the month ends (:func:`spend_keys`, :func:`budgets_for`).

A key may also have its own requests and tokens per minute (:mod:`apps.plans.key_limits`), inside
the org's: the ``key`` bucket, checked after the org's tokens and counted in the org's
minute under the key's own counters (:func:`~apps.plans.key_limits.key_requests_key`, ``key_tokens_key``) by
the same script or calls as the org's buckets, so it costs no extra round trip. A request
refused by the key is not counted against the org, and one the org refuses is not
counted against the key.

Windows are fixed minutes, offset per subject by a hash of its key (so every org's
minute does not roll over at once), the same arithmetic django-ratelimit uses; the
counter keys are this module's own (:func:`request_key`, :func:`tokens_key`,
:func:`leases_key`) and include the limit for requests, so a plan change starts
counting against the new limit at once.

If the cache is unreachable the buckets fail open (an outage of Redis must not take
inference down) and :data:`outage` says so once per incident; console sign-in
throttling (``apps.console.auth_views``) fails closed instead.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from apps.plans.pricing import period_of, seconds_to_next_period, spend_key, usd_of_units
from apps.plans.selectors import PlanLimits
from pendra_console.hot_settings import hot

if TYPE_CHECKING:
    from apps.plans.key_limits import KeyLimits

logger = logging.getLogger("pendra.limits")

WINDOW_SECONDS = 60
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
KEY_BUCKET = "key"
BUDGET_BUCKET = "budget"
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


def leases_key(org_id: int) -> str:
    """Redis: the sorted set of the org's stream leases, scored by when each lapses."""
    return f"plans:stream-leases:org:{org_id}"


def slot_key(org_id: int, slot: int) -> str:
    """Other caches: one of the org's ``concurrent_streams`` slots, holding its lease's id."""
    return f"plans:stream-slot:org:{org_id}:{slot}"


def spend_keys(org_id: int, key_id: int | None, period: str | None = None) -> tuple[str, str]:
    """The month's spend counters of the org and of the key ("" without a key)."""
    period = period or period_of()
    return spend_key(f"org:{org_id}", period), spend_key(f"key:{key_id}", period) if key_id is not None else ""


def usd_text(amount: Decimal) -> str:
    """``$1,234.50``; sub-cent amounts keep their places (``$0.0005``)."""
    text = f"{amount:,.4f}".rstrip("0")
    whole, _, places = text.partition(".")
    return f"${whole}.{places.ljust(2, '0')}"


def budgets_for(plan: PlanLimits, key_id: int | None) -> tuple[int, int]:
    """The hard budgets a request meets, in spend units: the org's and its key's (-1: none)."""
    org = plan.org_budget if plan.org_budget is not None else -1
    key = plan.key_budgets.get(key_id, -1) if key_id is not None else -1
    return org, key


def lease_seconds() -> float:
    return float(hot.PENDRA_STREAM_LEASE_SECONDS)


def new_lease_id() -> str:
    return secrets.token_hex(8)


def request_limit(plan: PlanLimits, kind: str) -> int:
    return int(getattr(plan, REQUEST_BUCKETS[kind]))


def token_limit(plan: PlanLimits, kind: str) -> int | None:
    bucket = TOKEN_BUCKETS.get(kind)
    return None if bucket is None else int(getattr(plan, bucket[1]))


@dataclass(frozen=True, slots=True)
class TokenBound:
    """A request's most tokens: the prompt's estimate, and what it may generate (None: it did not say)."""

    prompt: int = 0
    output: int | None = 0
    choices: int = 1
    param: str | None = None  # the request field to name when the bound can never fit

    def reservation(self, limit: int) -> int:
        if self.output is not None:
            return self.prompt + self.output
        # No max_tokens: the documented default, but never more than the minute has room for,
        # so leaving max_tokens out is not by itself a request that can never fit.
        default = hot.PENDRA_DEFAULT_MAX_TOKENS * self.choices
        return self.prompt + min(default, max(0, limit - self.prompt))


NO_TOKENS = TokenBound()


def reservation(plan: PlanLimits, kind: str, bound: TokenBound) -> int:
    """The tokens ``kind``'s request reserves at admission (0 for a kind without a tokens bucket)."""
    limit = token_limit(plan, kind)
    return 0 if limit is None else bound.reservation(limit)


def never_fits(plan: PlanLimits, kind: str, bound: TokenBound) -> Admission | None:
    """The 400 for a request whose bound exceeds a whole minute of its tokens bucket, else None."""
    limit = token_limit(plan, kind)
    reserve = reservation(plan, kind, bound)
    if limit is None or reserve <= limit:
        return None
    bucket = TOKEN_BUCKETS[kind][0]
    detail = (
        f"This request may use up to {reserve} tokens (a prompt of about {bound.prompt} and up to "
        f'{reserve - bound.prompt} generated), more than bucket "{bucket}" allows in a minute '
        f"({limit} tokens/minute on plan {plan.name}); lower max_tokens or n, or shorten the input."
    )
    return Admission(allowed=False, bucket=bucket, detail=detail, retry_after=0, status=400, param=bound.param)


def settle_delta(*, admission: Admission, tokens: int, end: int, reserved: int | None = None) -> int:
    """What settling adds to the tokens counter of the minute ending at ``end``.

    The reservation (``reserved``, default the org's) was counted in the admission's minute:
    corrected there while it lasts; a request that outlived its minute counts what it used
    in the current one.
    """
    reserved = admission.reserved if reserved is None else reserved
    return tokens - reserved if admission.window_end == end else tokens


class Verdict(enum.IntEnum):
    """What a back end found, in bucket order; the Lua script returns these numbers."""

    ALLOWED = 0
    TOKENS_USED_UP = 1
    REQUESTS_USED_UP = 2
    TOO_MANY_STREAMS = 3
    ORG_BUDGET_SPENT = 4
    KEY_BUDGET_SPENT = 5
    KEY_TOKENS_USED_UP = 6
    KEY_REQUESTS_USED_UP = 7


@dataclass(frozen=True, slots=True)
class Counted:
    """A back end's answer for one request: the verdict and the counts it saw."""

    verdict: Verdict
    requests: int  # requests counted this minute, this one included (0 when not counted)
    tokens: int  # tokens used this minute: before this request, with its reservation once admitted
    requests_reset: int | None = None  # seconds left in the request window, when the back end knows better
    reserved: int = 0  # tokens this request reserved (admitted only)
    window_end: int = 0  # the minute the back end counted in
    lease: str = ""  # the stream's lease (admitted streams only)
    key_reserved: int = 0  # tokens this request reserved in its key's own counter (admitted only)


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    bucket: str  # the bucket that refused, or the request's bucket when allowed
    detail: str
    retry_after: int  # seconds, >= 1 when refused
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 429  # a refusal's status: 400 for a request that can never fit its bucket
    param: str | None = None  # the request field a 400 is about
    reserved: int = 0  # tokens reserved at admission, replaced by the reported usage on settle
    window_end: int = 0  # the minute the reservation was counted in
    lease: str = ""  # the stream's lease: renewed while it runs, given back on settle
    key_tokens_id: int = 0  # the key whose own tokens counter holds key_reserved (0: none)
    key_reserved: int = 0
    # A refusal's plan and limit, kept apart from the detail so the request record can explain it.
    plan: str = ""
    limit: str = ""
    # The plan snapshot the request was admitted under: its prices price the request when it is billed.
    limits: PlanLimits | None = None


def allowed_unchecked(kind: str) -> Admission:
    """The answer while the counters are unreachable (fail open, no headers to promise)."""
    return Admission(allowed=True, bucket=kind, detail="", retry_after=0, headers={})


def decide(
    *,
    plan: PlanLimits,
    kind: str,
    subject: str,
    counted: Counted,
    key_id: int | None = None,
    key: KeyLimits | None = None,
) -> Admission:
    """The admission, its 429 detail and its headers, from what the back end counted."""
    if counted.verdict in (Verdict.ORG_BUDGET_SPENT, Verdict.KEY_BUDGET_SPENT):
        org_budget, key_budget = budgets_for(plan, key_id)
        of_key = counted.verdict == Verdict.KEY_BUDGET_SPENT
        amount = usd_text(usd_of_units(key_budget if of_key else org_budget))
        whose = "this API key" if of_key else "the organisation"
        return _refusal(BUDGET_BUCKET, f"{amount} monthly budget of {whose}", plan, seconds_to_next_period(), {})
    end = counted.window_end or window_end(subject)
    reset = seconds_left(end)
    if counted.verdict in (Verdict.KEY_TOKENS_USED_UP, Verdict.KEY_REQUESTS_USED_UP) and key is not None:
        tokens_hit = counted.verdict == Verdict.KEY_TOKENS_USED_UP
        limit_text = f"{key.tpm} tokens/minute" if tokens_hit else f"{key.rpm} requests/minute"
        detail = f'Rate limit exceeded for bucket "{KEY_BUCKET}" ({limit_text} for this API key); retry in {reset} s'
        headers = {"Retry-After": str(reset), "x-ratelimit-bucket": KEY_BUCKET}
        return Admission(
            allowed=False, bucket=KEY_BUCKET, detail=detail, retry_after=reset, headers=headers, limit=limit_text
        )
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
    return Admission(
        allowed=True,
        bucket=kind,
        detail="",
        retry_after=0,
        headers=headers,
        reserved=counted.reserved,
        window_end=end,
        lease=counted.lease,
        limits=plan,
        key_tokens_id=key.key_id if key is not None and key.tpm_for(kind) is not None else 0,
        key_reserved=counted.key_reserved,
    )


def _refusal(bucket: str, limit_text: str, plan: PlanLimits, retry_after: int, headers: dict[str, str]) -> Admission:
    retry = f"retry in {retry_after} s" if bucket != STREAMS_BUCKET else "retry when one of them ends"
    if bucket == BUDGET_BUCKET:
        retry = f"it resets when the month ends (UTC), in {retry_after} s; an owner or admin may raise it"
    detail = f'Rate limit exceeded for bucket "{bucket}" ({limit_text} on plan {plan.name}); {retry}'
    return Admission(
        allowed=False,
        bucket=bucket,
        detail=detail,
        retry_after=retry_after,
        headers={**headers, "Retry-After": str(retry_after), "x-ratelimit-bucket": bucket},
        plan=plan.name,
        limit=limit_text,
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
