"""Django's Redis cache, with ``incr`` in one round trip.

Django's ``RedisCache.incr`` asks ``EXISTS`` and then ``INCRBY`` (two round trips, and a
window between them). Rate-limit counters (``apps.plans.limits``, and django-ratelimit's
``get_usage`` for the admin API) call ``incr`` on every request, so here it is one atomic script.
Semantics are Django's: a missing key raises ``ValueError``.

:func:`cache_key` is ``cache.make_key`` for the gateway's hot path, which names a dozen
counters per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver

_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class RedisCache(DjangoRedisCache):
    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        client = self._cache.get_client(key, write=True)  # type: ignore[attr-defined]  # not in django-stubs
        value = client.eval(_INCR_IF_EXISTS, 1, key, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(value)

    # --- Stream leases (apps.plans.limits): a sorted set of lease ids scored by when each lapses ---

    def lease_take(self, key: Any, *, lease_id: str, now: float, seconds: float, limit: int) -> bool:
        """Add a lease unless ``limit`` unlapsed leases are held; lapsed ones are dropped first."""
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)  # type: ignore[attr-defined]
        return bool(client.eval(LEASE_TAKE, 1, key, repr(now), repr(seconds), limit, lease_id))

    def lease_renew(self, key: Any, *, lease_id: str, now: float, seconds: float) -> None:
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)  # type: ignore[attr-defined]
        client.eval(LEASE_RENEW, 1, key, repr(now), repr(seconds), lease_id)

    def lease_release(self, key: Any, *, lease_id: str) -> None:
        key = self.make_and_validate_key(key)
        self._cache.get_client(key, write=True).zrem(key, lease_id)  # type: ignore[attr-defined]

    def lease_count(self, key: Any, *, now: float) -> int:
        """Leases held at ``now`` (not lapsed)."""
        key = self.make_and_validate_key(key)
        return int(self._cache.get_client(key).zcount(key, f"({now!r}", "+inf"))  # type: ignore[attr-defined]


# KEYS: the lease set. ARGV: now, lease seconds, limit, lease id. 1 if taken, 0 if all are held.
LEASE_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""

# KEYS: the lease set. ARGV: now, lease seconds, lease id. Only a lease still held is extended
# (XX): one that lapsed may have been counted out, and its slot is someone else's now.
LEASE_RENEW = """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[3]) == 1 then
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
end
return 0
"""


_key_parts: tuple[Callable[[str, str, int], str], str, int] | None = None


def cache_key(key: str) -> str:
    """``cache.make_key(key)`` of the default cache, for keys the gateway hands to Redis itself.

    ``cache.make_key`` goes through Django's cache proxy and its context-local connection
    lookup on every call (about 3 µs; the limits name up to seven keys to admit a request and
    five to settle it); the key function, prefix and version it reads are fixed by the
    ``CACHES`` setting, so they are read once (again after a test changes ``CACHES``).
    """
    parts = _key_parts
    if parts is None:
        parts = _remember_key_parts()
    key_func, prefix, version = parts
    return key_func(key, prefix, version)


def _remember_key_parts() -> tuple[Callable[[str, str, int], str], str, int]:
    global _key_parts
    backend = caches["default"]
    _key_parts = (backend.key_func, backend.key_prefix, backend.version)
    return _key_parts


@receiver(setting_changed)
def _forget_key_parts(*, setting: str, **kwargs: Any) -> None:
    global _key_parts
    if setting == "CACHES":
        _key_parts = None
