"""Django's Redis cache, with ``incr`` in one round trip.

Django's ``RedisCache.incr`` asks ``EXISTS`` and then ``INCRBY`` (two round trips, and a
window between them). Rate-limit counters (``apps.plans.limits``, and django-ratelimit's
``get_usage`` for the admin API) call ``incr`` on every request, so here it is one atomic script.
Semantics are Django's: a missing key raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

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
