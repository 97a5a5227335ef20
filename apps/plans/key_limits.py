"""A key's own limits inside its org's: the ``key`` bucket's counters and token reservation.

The decision is :func:`apps.plans.limit_decision.decide`'s; both counter back ends count
these keys in the same script or calls as the org's buckets (no extra round trip).
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.plans.limit_decision import KEY_BUCKET, TOKEN_BUCKETS, Admission, TokenBound


def key_requests_key(key_id: int, limit: int, end: int) -> str:
    return f"plans:key-requests:key:{key_id}:{limit}:{end}"


def key_tokens_key(key_id: int, end: int) -> str:
    return f"plans:key-tokens:key:{key_id}:{end}"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's own limits inside its org's (None: only the org's apply)."""

    key_id: int
    rpm: int | None = None
    tpm: int | None = None

    def tpm_for(self, kind: str) -> int | None:
        """The key's tokens limit where ``kind`` counts tokens (chat, embeddings), else None."""
        return self.tpm if kind in TOKEN_BUCKETS else None


def key_reservation(key: KeyLimits | None, kind: str, bound: TokenBound) -> int:
    limit = key.tpm_for(kind) if key is not None else None
    return 0 if limit is None else bound.reservation(limit)


def key_never_fits(key: KeyLimits | None, kind: str, bound: TokenBound) -> Admission | None:
    """:func:`never_fits` for the key's own tokens per minute."""
    limit = key.tpm_for(kind) if key is not None else None
    if limit is None:
        return None
    reserve = bound.reservation(limit)
    if reserve <= limit:
        return None
    detail = (
        f"This request may use up to {reserve} tokens, more than this key's own limit allows in a minute "
        f'(bucket "{KEY_BUCKET}": {limit} tokens/minute); lower max_tokens or n, or shorten the input.'
    )
    return Admission(allowed=False, bucket=KEY_BUCKET, detail=detail, retry_after=0, status=400, param=bound.param)
