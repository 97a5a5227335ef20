"""API key authentication: one implementation for the admin API (DRF) and the gateway.

``authenticate_key`` reads the database and is what DRF uses, so the admin API
always acts with the key's current state and its user's current role.
``KeyCache`` is the gateway's warm path: the row's facts kept in process memory for
``PENDRA_KEY_CACHE_SECONDS`` (default 1 s), evicted at once in this process on
revoke/rotate/role change, so a warm request costs no query. The secret is still
checked against the cached hash on every request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from apps.keys import tokens
from apps.keys.models import ApiKey
from pendra_console.contract import INVALID_TOKEN

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """What the gateway needs to know about a key, without the ORM."""

    key_id: int
    public_id: str
    secret_hash: str
    org_id: int | None
    user_id: int
    expires_at: datetime | None
    grace_until: datetime | None
    revoked: bool

    def usable_at(self, now: datetime) -> bool:
        if self.revoked or not self.secret_hash:
            return False
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.grace_until is None or self.grace_until > now


def _principal(key: ApiKey) -> KeyPrincipal:
    return KeyPrincipal(
        key_id=key.pk,
        public_id=key.public_id,
        secret_hash=key.secret_hash,
        org_id=key.org_id,
        user_id=key.user_id,
        expires_at=key.expires_at,
        grace_until=key.grace_until,
        revoked=key.revoked_at is not None,
    )


def load_principal(public_id: str) -> KeyPrincipal | None:
    key = ApiKey.objects.filter(public_id=public_id, user__is_active=True).first()
    return _principal(key) if key is not None else None


def touch_last_used(key_id: int, now: datetime) -> None:
    """Write ``last_used_at`` at most once a minute per key, whoever races."""
    ApiKey.objects.filter(pk=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)


def authenticate_key(raw: str | None) -> ApiKey | None:
    """The usable key for a presented string, or None. A malformed key costs no query."""
    parsed = tokens.parse_key(raw)
    if parsed is None:
        return None
    key = ApiKey.objects.select_related("user", "org").filter(public_id=parsed.public_id).first()
    if key is None or not key.user.is_active or not tokens.secret_matches(parsed.secret, key.secret_hash):
        return None
    now = timezone.now()
    if not key.usable_at(now):
        return None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        touch_last_used(key.pk, now)
    return key


class KeyCache:
    """Per-process cache of key principals with a short TTL (the gateway's warm path)."""

    def __init__(self, ttl: float | None = None) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, KeyPrincipal | None]] = {}
        self._last_touched: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def ttl(self) -> float:
        return self._ttl if self._ttl is not None else settings.PENDRA_KEY_CACHE_SECONDS

    def cached(self, public_id: str) -> tuple[bool, KeyPrincipal | None]:
        entry = self._entries.get(public_id)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def peek(self, public_id: str) -> tuple[float, KeyPrincipal | None] | None:
        """The entry and when it expires (``time.monotonic``), expired or not: the gateway decides,
        and makes the requests that find it expired share one load."""
        return self._entries.get(public_id)

    def store(self, public_id: str, principal: KeyPrincipal | None) -> None:
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()  # bounded memory under a flood of random public ids
            self._entries[public_id] = (time.monotonic() + self.ttl, principal)

    def evict(self, public_id: str) -> None:
        with self._lock:
            self._entries.pop(public_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def due_for_touch(self, key_id: int) -> bool:
        """True at most once a minute per key and process: the caller then writes last_used_at."""
        now = time.monotonic()
        last = self._last_touched.get(key_id)
        if last is not None and now - last < LAST_USED_RESOLUTION.total_seconds():
            return False
        self._last_touched[key_id] = now
        return True


key_cache = KeyCache()


class ApiKeyAuthentication(BaseAuthentication):
    """DRF: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        authorization = request.headers.get("Authorization")
        x_api_key = request.headers.get("X-Api-Key")
        if authorization is None and x_api_key is None:
            return None  # let session authentication try
        raw, acceptable = tokens.key_from_headers(authorization, x_api_key)
        if not acceptable or raw is None:
            raise AuthenticationFailed(INVALID_TOKEN)
        key = authenticate_key(raw)
        if key is None:
            raise AuthenticationFailed(INVALID_TOKEN)
        request._request.api_key = key  # type: ignore[attr-defined]
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def request_api_key(request: Request) -> ApiKey | None:
    """The key a DRF request authenticated with, or None for a session."""
    return request.auth if isinstance(request.auth, ApiKey) else None


def is_anonymous(user: Any) -> bool:
    return user is None or isinstance(user, AnonymousUser) or not user.is_authenticated
