"""The durable hand-off of records: a Redis Stream between the request path and PostgreSQL.

With ``PENDRA_RECORD_HANDOFF=redis`` (the default when ``REDIS_URL`` is set) the gateway
appends each finished request's record and usage row to the stream ``pendra:records``
(one ``XADD``, in the same write as the limits' settle) *before the last bytes of its
response*, so a web process killed after answering has lost nothing it answered.

``manage.py record_writer`` processes, members of the consumer group ``writers``, write
the entries to PostgreSQL in bounded batches and only after the commit ``XACK`` and
``XDEL`` them, so the stream's length is the backlog:

- a writer that died holding entries (read, never acknowledged) loses them to another:
  a pass claims entries pending longer than ``PENDRA_RECORD_CLAIM_IDLE`` seconds
  (``XAUTOCLAIM``);
- an entry written twice (a writer killed between its commit and its ``XACK``) writes
  nothing twice: records are unique per server-minted uid, usage rows per request uid
  (:func:`apps.requestlog.writer.write_records`).

If Redis cannot take an entry, the gateway hands the rows to the in-process writer
instead (:data:`apps.requestlog.recorder.recorder`): nothing answered is lost while the
process lives, but records of that moment are only as durable as the process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import redis
from django.conf import settings

from apps.requestlog.writer import write_records
from pendra_console import redis_mux
from pendra_console.hot_settings import hot

logger = logging.getLogger("pendra.requestlog")

STREAM = "pendra:records"
GROUP = "writers"
FIELD = b"d"

Entry = tuple[dict[str, Any], dict[str, Any] | None]
Message = tuple[bytes, dict[bytes, bytes]]


def enabled() -> bool:
    return hot.PENDRA_RECORD_HANDOFF == "redis"  # read on every /v1 request


def consumer_name() -> str:
    """Unique per process: a dead writer's pending entries stay under its name until claimed."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode(record: dict[str, Any], usage: dict[str, Any] | None) -> bytes:
    """The entry: ``[record, usage]`` as JSON, a datetime as ISO 8601 and a Decimal as its exact text.

    orjson writes what ``json.dumps(..., default=_iso)`` wrote (a writer of either version
    reads either's entries) for about a fifth of the CPU (bench/README.md). It refuses a few
    values json takes (a lone surrogate, an integer beyond 64 bits): cleaning leaves none in a
    row, but should one get through, json writes the entry, so no record is lost for it.
    """
    try:
        return orjson.dumps([record, usage], default=_iso)
    except orjson.JSONEncodeError:
        return json.dumps([record, usage], default=_iso, separators=(",", ":")).encode()


def _iso(value: Any) -> str:
    # orjson writes datetimes itself, as isoformat() does; json needs this for them.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact, unlike a float
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode(raw: bytes) -> Entry:
    try:
        record, usage = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # What orjson refuses and json reads: an escaped lone surrogate or a NaN (json's entries).
        record, usage = json.loads(raw)
    for row in (record, usage):
        if row is not None and isinstance(row.get("created_at"), str):
            row["created_at"] = datetime.fromisoformat(row["created_at"])
    if usage is not None and isinstance(usage.get("cost"), str):
        usage["cost"] = Decimal(usage["cost"])
    return record, usage


def xadd(entry: bytes) -> bytes:
    """The entry's ``XADD``, to be written with the other commands of its turn
    (:mod:`apps.gateway.record_handoff`, on :mod:`pendra_console.redis_mux`'s connection)."""
    return redis_mux.encode("XADD", STREAM, "*", FIELD, entry)


_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The writers' connection; its timeout outlasts a blocking read's one second."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=2)
    return _client


def backlog() -> int:
    """Entries handed over and not yet written (written entries are deleted)."""
    return int(client().xlen(STREAM))


def ensure_group(connection: redis.Redis) -> None:
    try:
        connection.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _messages(reply: Any) -> list[Message]:
    return [message for _, batch in reply or [] for message in batch]


def _read(connection: redis.Redis, consumer: str, batch: int, block_ms: int | None, recover: bool) -> list[Message]:
    """One kind of entry per pass. With ``recover``: first this writer's own unwritten ones
    (the database was down), then what dead writers left pending; then new entries."""
    messages: list[Message] = []
    if recover:
        messages = _messages(connection.xreadgroup(GROUP, consumer, {STREAM: "0"}, count=batch))
    if recover and not messages:
        idle_ms = int(settings.PENDRA_RECORD_CLAIM_IDLE * 1000)
        reply = connection.xautoclaim(STREAM, GROUP, consumer, idle_ms, start_id="0-0", count=batch)
        messages = list(reply[1])
    if not messages:
        messages = _messages(connection.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=batch, block=block_ms))
    return messages


def write_pass(consumer: str, *, batch: int, block_ms: int | None = None, recover: bool = True) -> int:
    """Read up to ``batch`` entries, write them in one transaction, then acknowledge them.

    ``recover`` looks for entries read and never acknowledged (this writer's after an outage,
    dead writers') before new ones: two more round trips, so a long-running writer does it
    every few seconds, not every pass. Returns how many entries were taken. A Redis or
    database outage raises: the entries read stay pending for this writer (or, should it
    die, for another's claim).
    """
    connection = client()
    try:
        messages = _read(connection, consumer, batch, block_ms, recover)
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        # No group yet, or the stream was deleted (FLUSHALL) and an XADD made it again without one.
        ensure_group(connection)
        messages = _read(connection, consumer, batch, block_ms, recover)
    if not messages:
        return 0
    records, usages, ids = [], [], []
    for message_id, fields in messages:
        ids.append(message_id)
        if not fields:
            continue  # deleted while pending (Redis 6.2 still hands it out): only the ack is left
        try:
            record, usage = decode(fields[FIELD])
        except (ValueError, TypeError, KeyError):
            logger.error("request record entry %s is unreadable; set aside", message_id.decode())
            continue
        records.append(record)
        if usage is not None:
            usages.append(usage)
    write_records(records, usages)
    with connection.pipeline(transaction=False) as pipe:
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()
    return len(ids)
