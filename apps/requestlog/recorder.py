"""The gateway's in-process record writer: records leave the request path and are written in batches.

Without the durable hand-off (:mod:`apps.requestlog.handoff`; the embedded default, or
``PENDRA_RECORD_HANDOFF=memory``), and for the records Redis refused when it is on,
:func:`apps.requestlog.services.record_request` hands each finished gateway request to
:data:`recorder` (an append to a deque, no I/O). A daemon thread writes whatever has accumulated every
``PENDRA_RECORD_FLUSH_SECONDS`` with one transaction. A failed write keeps the batch
and retries on the next tick (the usage table's unique constraint makes a retried
batch harmless); the ASGI lifespan shutdown and ``atexit`` flush what is left.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from apps.keys.authentication import touch_last_used
from apps.requestlog import handoff
from apps.requestlog.writer import UNREACHABLE, write_records
from pendra_console.metrics import RECORD_BACKLOG

logger = logging.getLogger("pendra.requestlog")

MAX_PENDING = 200_000


class Recorder:
    def __init__(self) -> None:
        self._records: deque[dict[str, Any]] = deque()
        self._usages: deque[dict[str, Any]] = deque()
        self._touches: deque[tuple[int, datetime]] = deque()
        self._flush_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_flight = 0
        self.dropped = 0

    def submit(self, record: dict[str, Any], usage: dict[str, Any] | None = None) -> None:
        if len(self._records) >= MAX_PENDING:
            # The database has been unreachable for a long time; refuse to grow without bound.
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.error("request records backlog full: %d dropped so far", self.dropped)
            return
        self._records.append(record)
        if usage is not None:
            self._usages.append(usage)
        self._ensure_thread()

    def touch_key(self, key_id: int, now: datetime) -> None:
        self._touches.append((key_id, now))
        self._ensure_thread()

    @property
    def pending(self) -> int:
        return len(self._records) + len(self._usages)

    def backlog(self) -> int:
        """Rows submitted and not yet written: grows only while the database is unreachable."""
        return len(self._records) + len(self._usages) + self._in_flight

    def flush(self) -> int:
        """Write everything submitted so far. Safe to call from any thread."""
        with self._flush_lock:
            records = [self._records.popleft() for _ in range(len(self._records))]
            usages = [self._usages.popleft() for _ in range(len(self._usages))]
            touches = [self._touches.popleft() for _ in range(len(self._touches))]
            if not (records or usages or touches):
                return 0
            self._in_flight = len(records) + len(usages)
            try:
                close_old_connections()
                # A row the database refuses is set aside there; only an unreachable database raises.
                write_records(records, usages)
            except UNREACHABLE as exc:
                logger.error(
                    "database unreachable (%s); %d request records kept for the next tick",
                    exc.__class__.__name__,
                    len(records),
                )
                # Put the batch back in front, in order, for the next attempt.
                self._records.extendleft(reversed(records))
                self._usages.extendleft(reversed(usages))
                connection.close()
                return 0
            finally:
                self._in_flight = 0
                close_old_connections()  # CONN_MAX_AGE decides whether the writer keeps its connection
            self._touch(touches)
            return len(records)

    @staticmethod
    def _touch(touches: list[tuple[int, datetime]]) -> None:
        # "Last used" is a hint for the console: a failed update is logged, never retried.
        try:
            for key_id, at in touches:
                touch_last_used(key_id, at)
        except Exception:
            logger.exception("could not update %d keys' last use", len(touches))
            connection.close()
        finally:
            close_old_connections()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._thread_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="pendra-recorder", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wakeup.wait(settings.PENDRA_RECORD_FLUSH_SECONDS)
                self._wakeup.clear()
                self.flush()
                RECORD_BACKLOG.set(self.pending)
        finally:
            connection.close()

    def close(self) -> None:
        self.flush()


recorder = Recorder()
atexit.register(recorder.flush)


def records_backlog() -> int | None:
    """Request and usage rows this process has accepted and not yet written, plus, with the
    durable hand-off, the stream's entries not yet written by any writer (metrics, /readyz);
    None when Redis cannot say."""
    if not handoff.enabled():
        return recorder.backlog()
    try:
        return recorder.backlog() + handoff.backlog()
    except (RedisError, OSError, TimeoutError):
        return None
