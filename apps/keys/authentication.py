"""API key authentication, written once for both surfaces.

- :func:`authenticate_key` (sync) is what DRF's :class:`ApiKeyAuthentication` calls on
  every admin-API request: it reads the key and its user's membership in the key's org,
  so the admin API acts with the key's current state and its user's *current* role.
- :func:`authenticate_key_cached` (async) is what the gateway calls: the row's facts are
  kept in process memory for ``PENDRA_KEY_CACHE_SECONDS`` (default 1 s), evicted at once
  in this process on revoke/rotate/delete, so a warm request costs no query. Concurrent
  requests for an expired entry share one load. With Redis the entry lives up to
  ``PENDRA_WATCHED_CACHE_SECONDS`` while the keys' epoch confirms nothing changed; every
  change announces itself there (:mod:`pendra_console.epochs`), so other processes still
  drop the old facts within ``PENDRA_KEY_CACHE_SECONDS``. The cached copy carries no role: ``/v1``
  needs none (any member's key may infer), so a role change has nothing to evict.

Both parse the presented key (a malformed one costs no query), compare the secret with
the stored HMAC in constant time, and apply the one "usable at" rule of
:mod:`apps.keys.models`. ``last_used_at`` is written at most once a minute per key.

A public id with no key behind it is remembered for ``PENDRA_KEY_NEGATIVE_CACHE_SECONDS``
(ids are random, so none unknown now is about to be issued), and each client address may
make only ``PENDRA_UNKNOWN_KEY_BUDGET`` lookups of unknown keys a minute per process:
random well-formed keys cannot each cost a database query without limit.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, Throttled
from rest_framework.request import Request

from apps.keys import tokens
from apps.keys.controls import Network, parse_networks
from apps.keys.models import ApiKey, key_usable_at
from apps.orgs.models import Membership
from apps.orgs.platform import confine_to_org
from apps.plans.key_limits import KeyLimits
from pendra_console import epochs
from pendra_console.client_address import request_client_address
from pendra_console.contract import INVALID_TOKEN
from pendra_console.hot_settings import hot
from pendra_console.ttl_cache import TTLCache

LAST_USED_RESOLUTION = timedelta(minutes=1)


# --- Sync: the admin API ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """What DRF keeps in ``request.auth`` for a key: the key, and its user's membership in
    the key's org as read for this request (None for a staff key outside any org, or a
    user who is no longer a member). :class:`apps.orgs.permissions.OrgScopedAPIView`
    reads ``org_id`` and ``membership`` from it."""

    key: ApiKey
    membership: Membership | None

    @property
    def org_id(self) -> int | None:
        return self.key.org_id


def touch_last_used(key_id: int, now: datetime) -> None:
    """Write ``last_used_at`` at most once a minute per key, whoever races."""
    ApiKey.objects.filter(pk=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)


def authenticate_key(raw: str | None) -> KeyCredential | None:
    """The usable key for a presented string with its membership, or None. A malformed key costs no query."""
    parsed = tokens.parse_key(raw)
    if parsed is None or key_cache.known_unknown(parsed.public_id):
        return None
    key = ApiKey.objects.select_related("user", "org").filter(public_id=parsed.public_id).first()
    if key is None:
        key_cache.store(parsed.public_id, None, unknown=True)
        return None
    if not key.user.is_active or not tokens.secret_matches(parsed.secret, key.secret_hash):
        return None
    now = timezone.now()
    if not key.usable_at(now):
        return None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        touch_last_used(key.pk, now)
    membership = None
    if key.org_id is not None:
        membership = Membership.objects.select_related("org").filter(org_id=key.org_id, user_id=key.user_id).first()
    return KeyCredential(key=key, membership=membership)


class ApiKeyAuthentication(BaseAuthentication):
    """DRF: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""

    def authenticate(self, request: Request) -> tuple[Any, KeyCredential] | None:
        authorization = request.headers.get("Authorization")
        x_api_key = request.headers.get("X-Api-Key")
        if authorization is None and x_api_key is None:
            return None  # let session authentication try
        raw, acceptable = tokens.key_from_headers(authorization, x_api_key)
        if not acceptable or raw is None:
            raise AuthenticationFailed(INVALID_TOKEN)
        parsed = tokens.parse_key(raw)
        address = request_client_address(request._request)
        # Only a lookup that would reach the database is budgeted (see UnknownKeyBudget).
        queried = parsed is not None and not key_cache.known_unknown(parsed.public_id)
        if queried and (wait := unknown_keys.retry_after(address)):
            raise Throttled(wait=wait, detail=unknown_key_refusal(wait))
        credential = authenticate_key(raw)
        if credential is None:
            if queried and key_cache.known_unknown(parsed.public_id):  # type: ignore[union-attr]
                unknown_keys.charge(address)
            raise AuthenticationFailed(INVALID_TOKEN)
        request._request.api_key = credential.key  # type: ignore[attr-defined]  # the admin request record names it
        if credential.key.allowed_ips and not _principal(credential.key).admits_address(address):
            raise PermissionDenied(address_refusal(address))
        if credential.org_id is not None:
            confine_to_org(credential.key.user)
        return credential.key.user, credential

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def address_refusal(address: str) -> str:
    return (
        f"This API key only accepts requests from its allowed address ranges (allowed_ips); {address} is not in them."
    )


def request_api_key(request: Request) -> ApiKey | None:
    """The key a DRF request authenticated with, or None for a session."""
    return request.auth.key if isinstance(request.auth, KeyCredential) else None


# --- Async, cached: the gateway ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """The gateway's cached copy of a key's row, without the ORM (and without a role)."""

    key_id: int
    public_id: str
    secret_hash: str
    org_id: int | None
    user_id: int
    expires_at: datetime | None
    grace_until: datetime | None
    revoked_at: datetime | None
    # The key's own controls (apps/keys/controls.py), parsed once per load, so the warm path reads no table.
    models: frozenset[str] | None = None  # None: every model of the org
    networks: tuple[Network, ...] = ()  # empty: any address
    limits: KeyLimits | None = None  # None: only the org's limits

    def usable_at(self, now: datetime) -> bool:
        return key_usable_at(self, now)

    def admits_address(self, address: str) -> bool:
        """True if the key has no address ranges or ``address`` (the client's, as trusted proxies saw it) is in one."""
        if not self.networks:
            return True
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self.networks)


def load_principal(public_id: str) -> KeyPrincipal | None:
    key = ApiKey.objects.select_related("user").filter(public_id=public_id).first()
    return _principal(key) if key is not None and key.user.is_active else None


def _principal(key: ApiKey) -> KeyPrincipal:
    return KeyPrincipal(
        key_id=key.pk,
        public_id=key.public_id,
        secret_hash=key.secret_hash,
        org_id=key.org_id,
        user_id=key.user_id,
        expires_at=key.expires_at,
        grace_until=key.grace_until,
        revoked_at=key.revoked_at,
        models=frozenset(key.allowed_models) if key.allowed_models else None,
        networks=parse_networks(key.allowed_ips),
        limits=(
            KeyLimits(key_id=key.pk, rpm=key.rpm_limit, tpm=key.tpm_limit)
            if key.rpm_limit is not None or key.tpm_limit is not None
            else None
        ),
    )


class KeyCache:
    """The gateway's per-process cache of key principals: two :class:`TTLCache` s.

    ``principals`` keeps a key's facts for ``PENDRA_KEY_CACHE_SECONDS`` with one shared
    reload when they expire; ``unknown`` remembers a public id with no key behind it for
    ``PENDRA_KEY_NEGATIVE_CACHE_SECONDS``. An eviction (revoke, rotate, delete) also stops a
    reload already under way from storing what it read before the change.
    """

    def __init__(self) -> None:
        self.principals: TTLCache[str, KeyPrincipal | None] = TTLCache(
            lambda: hot.PENDRA_KEY_CACHE_SECONDS, watch=epochs.KEYS
        )
        self.unknown: TTLCache[str, bool] = TTLCache(lambda: hot.PENDRA_KEY_NEGATIVE_CACHE_SECONDS)
        self._last_touched: dict[int, float] = {}

    def peek(self, public_id: str) -> tuple[float, KeyPrincipal | None] | None:
        """The entry and when it expires (``time.monotonic``), expired or not."""
        unknown = self.unknown.entry(public_id)
        return (unknown[0], None) if unknown is not None else self.principals.entry(public_id)

    def store(self, public_id: str, principal: KeyPrincipal | None, *, unknown: bool = False) -> None:
        """Cache ``principal``; ``unknown`` (no row at all) keeps the id for the negative-cache time."""
        if unknown:
            self.unknown.store(public_id, True)
        else:
            self.unknown.evict(public_id)
            self.principals.store(public_id, principal)

    def known_unknown(self, public_id: str) -> bool:
        """True while ``public_id`` is remembered as having no key."""
        return self.unknown.fresh(public_id)[0]

    def evict(self, public_id: str) -> None:
        self.principals.evict(public_id)
        self.unknown.evict(public_id)

    def evict_now_and_on_commit(self, public_id: str) -> None:
        """After a change to the key's row: a gateway request racing the transaction cannot re-cache
        the old facts, and every other process drops its copy once the change is committed."""
        self.evict(public_id)
        transaction.on_commit(lambda: self.evict(public_id))
        epochs.changed(epochs.KEYS)

    def clear(self) -> None:
        self.principals.clear()
        self.unknown.clear()

    def due_for_touch(self, key_id: int) -> bool:
        """True at most once a minute per key and process: the caller then writes last_used_at."""
        now = time.monotonic()
        last = self._last_touched.get(key_id)
        if last is not None and now - last < LAST_USED_RESOLUTION.total_seconds():
            return False
        if len(self._last_touched) > 100_000:
            self._last_touched.clear()  # bounded memory; the cost is one extra write per key
        self._last_touched[key_id] = now
        return True


key_cache = KeyCache()


class UnknownKeyBudget:
    """How many unknown keys each client address presented this minute, in this process.

    Checked before a key lookup that would reach the database, charged when the lookup
    found no key: a client sending random well-formed keys gets a few 401s, then 429s
    that cost no query, while real keys from the same address are never charged. Per
    process and in memory, so the check itself costs nothing on the warm path.
    """

    WINDOW_SECONDS = 60

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}  # address -> (window, unknown keys seen)
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """0 while ``address`` may still have a key looked up, else seconds until it may again."""
        now = time.time()
        window = int(now // self.WINDOW_SECONDS)
        seen = self._counts.get(address)
        if seen is None or seen[0] != window or seen[1] < hot.PENDRA_UNKNOWN_KEY_BUDGET:
            return 0
        return max(1, (window + 1) * self.WINDOW_SECONDS - int(now))

    def charge(self, address: str) -> None:
        window = int(time.time() // self.WINDOW_SECONDS)
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts.clear()  # bounded memory under a flood of addresses
            seen = self._counts.get(address)
            count = seen[1] + 1 if seen is not None and seen[0] == window else 1
            self._counts[address] = (window, count)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


unknown_keys = UnknownKeyBudget()


def unknown_key_refusal(retry_after: int) -> str:
    return f"Too many unknown API keys from your address; retry in {retry_after} s."


class UnknownKeyBudgetSpent(Exception):
    """This address has used its lookups of unknown keys for the minute: answer 429."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(unknown_key_refusal(retry_after))
        self.retry_after = retry_after


def _load(public_id: str) -> KeyPrincipal | None:
    key = ApiKey.objects.select_related("user").filter(public_id=public_id).first()
    if key is None:
        key_cache.store(public_id, None, unknown=True)
        return None
    return _principal(key) if key.user.is_active else None


async def authenticate_key_cached(
    authorization: str | None,
    x_api_key: str | None,
    *,
    address: str,
    on_used: Callable[[int, datetime], None],
) -> KeyPrincipal | None:
    """The usable key presented in these headers, or None. ``on_used(key_id, now)`` is called
    at most once a minute per key and process, for the caller to record ``last_used_at`` off
    the request's path. Raises :class:`UnknownKeyBudgetSpent` when a lookup would reach the
    database and ``address`` has spent its budget of unknown keys."""
    raw, acceptable = tokens.key_from_headers(authorization, x_api_key)
    parsed = tokens.parse_key(raw) if acceptable else None
    if parsed is None:
        return None
    # A cached entry is never served past its second unless the keys' epoch confirmed it within
    # that second (a revocation in another process must take effect); concurrent requests for an
    # expired entry share one load.
    if key_cache.known_unknown(parsed.public_id):
        return None
    fresh, principal = key_cache.principals.fresh(parsed.public_id)
    if not fresh:
        if wait := unknown_keys.retry_after(address):
            raise UnknownKeyBudgetSpent(wait)
        principal = await key_cache.principals.reload(parsed.public_id, lambda: _load(parsed.public_id))
        if principal is None and key_cache.known_unknown(parsed.public_id):
            unknown_keys.charge(address)
    now = datetime.now(UTC)  # timezone.now() with USE_TZ, without reading the setting
    if principal is None or not tokens.secret_matches(parsed.secret, principal.secret_hash):
        return None
    if not principal.usable_at(now):
        return None
    if key_cache.due_for_touch(principal.key_id):
        on_used(principal.key_id, now)
    return principal


def presented_key(authorization: str | None, x_api_key: str | None) -> tuple[str, KeyPrincipal | None]:
    """The public id of the key in these headers if it parsed (never its secret), and the facts
    this process cached for it (its org and user), without a query: what the record of a
    refused request names."""
    raw, acceptable = tokens.key_from_headers(authorization, x_api_key)
    parsed = tokens.parse_key(raw) if acceptable else None
    if parsed is None:
        return "", None
    return parsed.public_id, key_cache.principals.peek(parsed.public_id)
