"""Requests in flight per worker, shared between the gateway processes that count them and the pages that show them.

Each gateway process counts its own attempts in memory (``apps.gateway.routing``) and
publishes the counts from its fleet-refresh loop, never from the request path. With Redis
(the shared place of a multi-process, multi-node deployment) a process's counts are one hash,
``<prefix>:inflight:<node>`` (worker id -> count), that expires ``TTL_SECONDS`` after its last
publish, so a killed process's counts vanish on their own; the live processes are the members
of the sorted set ``<prefix>:inflight:nodes``, each scored by when its hash lapses, so a
reader needs no SCAN of the keyspace. Without Redis one process serves console and gateway and
the Django cache holds the same two entries.

This module lives in ``apps.workers`` because both the gateway and the console may import it
(the import-linter layers in pyproject.toml); it never imports either.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

# A process publishes at least every TTL_SECONDS / 3 while it has requests in flight, so two
# missed publishes (a Redis blip, a busy loop) do not blank its counts; a dead one's vanish within this.
TTL_SECONDS = 6.0
HEARTBEAT_SECONDS = TTL_SECONDS / 3

# This process's name among the publishers: host and pid for whoever reads Redis, plus a
# random part because a restarted container may reuse both.
NODE_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

logger = logging.getLogger("pendra.workers")

_NODES = "inflight:nodes"


def _node(node_id: str) -> str:
    return f"inflight:{node_id}"


def queue_publish(pipe: Any, *, node_id: str, counts: Mapping[str, int], now: float) -> None:
    """Queue on a Redis pipeline (sync or asyncio) the commands that make ``counts`` this node's.

    The hash is replaced, not merged, so a worker whose requests all finished drops out; run
    the pipeline as a transaction so a reader never sees it half-written. No counts: the node
    leaves the set.
    """
    key = cache.make_key(_node(node_id))
    nodes = cache.make_key(_NODES)
    pipe.delete(key)
    if counts:
        pipe.hset(key, mapping=dict(counts))
        pipe.expire(key, int(TTL_SECONDS))
        pipe.zadd(nodes, {node_id: now + TTL_SECONDS})
        pipe.expire(nodes, int(TTL_SECONDS))
    else:
        pipe.zrem(nodes, node_id)
    pipe.zremrangebyscore(nodes, "-inf", now)


def publish_to_cache(*, node_id: str, counts: Mapping[str, int], now: float) -> None:
    """Without Redis: the same entries in the Django cache (one process, so no lost update to fear)."""
    nodes: dict[str, float] = {
        node: lapses for node, lapses in (cache.get(_NODES) or {}).items() if lapses > now and node != node_id
    }
    if counts:
        cache.set(_node(node_id), dict(counts), timeout=TTL_SECONDS)
        nodes[node_id] = now + TTL_SECONDS
    else:
        cache.delete(_node(node_id))
    cache.set(_NODES, nodes, timeout=None)


def inflight_by_worker() -> dict[str, int] | None:
    """Worker id -> requests in flight, summed over every live gateway process (absent: none).

    Counts are as of each process's last publish: at most a refresh interval (half a second)
    old. None when Redis cannot be read: unknown, which a page must not show as zero.
    """
    now = time.time()
    totals: dict[str, int] = {}
    if not settings.REDIS_URL:
        for node_id, lapses in (cache.get(_NODES) or {}).items():
            if lapses > now:
                for worker_id, count in (cache.get(_node(node_id)) or {}).items():
                    totals[worker_id] = totals.get(worker_id, 0) + count
        return totals
    try:
        client = cache._cache.get_client(write=False)  # type: ignore[attr-defined]  # Django's RedisCache
        node_ids = client.zrangebyscore(cache.make_key(_NODES), now, "+inf")
        pipe = client.pipeline(transaction=False)
        for node_id in node_ids:
            pipe.hgetall(cache.make_key(_node(node_id.decode())))
        per_node: list[dict[bytes, bytes]] = pipe.execute() if node_ids else []
    except (RedisError, OSError) as exc:
        logger.warning("could not read requests in flight from Redis (%s)", type(exc).__name__)
        return None
    for counts in per_node:
        for worker_id, count in counts.items():
            totals[worker_id.decode()] = totals.get(worker_id.decode(), 0) + int(count)
    return totals
