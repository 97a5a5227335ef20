"""``manage.py record_writer``: write request records from the Redis Stream to PostgreSQL.

Long-running, one member of the stream's consumer group (:mod:`apps.requestlog.handoff`);
run as many as the write load needs. SIGTERM and SIGINT finish the batch in hand, then
exit. ``--once`` writes what the stream holds and exits (a backlog after an outage, tests).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from apps.requestlog import handoff
from apps.requestlog.writer import UNREACHABLE

logger = logging.getLogger("pendra.requestlog")

# An outage is retried after this many seconds; the stream keeps the records meanwhile.
RETRY_SECONDS = 1.0
# How often a running writer looks for entries that a dead writer (or an outage) left unacknowledged.
RECOVER_SECONDS = 5.0


class Command(BaseCommand):
    help = "Write request records from the Redis Stream to the database until stopped (SIGTERM)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="write what the stream holds now, then exit")
        parser.add_argument(
            "--batch", type=int, default=None, help="entries per transaction (PENDRA_RECORD_WRITER_BATCH)"
        )

    def handle(self, *args: Any, once: bool, batch: int | None, **options: Any) -> None:
        if not handoff.enabled():
            raise CommandError("record_writer needs the durable hand-off: set REDIS_URL (PENDRA_RECORD_HANDOFF=redis).")
        batch = batch or settings.PENDRA_RECORD_WRITER_BATCH
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        stopping = threading.Event()
        if not once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.set())
        consumer = handoff.consumer_name()
        written = 0
        recover_at = 0.0  # when to look again for entries read and never acknowledged
        while not stopping.is_set():
            recover = once or time.monotonic() >= recover_at
            try:
                count = handoff.write_pass(consumer, batch=batch, block_ms=None if once else 1000, recover=recover)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.error("record writer: Redis unreachable (%s); retrying", exc.__class__.__name__)
                count = -1
            except UNREACHABLE as exc:
                logger.error("record writer: database unreachable (%s); the stream keeps the records", exc)
                connection.close()
                count = -1
            finally:
                close_old_connections()
            if count > 0:
                written += count
            elif once:
                # A pass takes one kind of entry (own, claimed, new): done when one finds none.
                if count == 0:
                    break
                raise CommandError(f"record_writer --once stopped on an outage after {written} entries")
            if count < 0:
                recover_at = 0.0  # what this writer read before the outage is still its own
                stopping.wait(RETRY_SECONDS)
            elif count < batch and not once:
                if recover:
                    recover_at = time.monotonic() + min(RECOVER_SECONDS, settings.PENDRA_RECORD_CLAIM_IDLE)
                # A short batch: let the next one gather rather than pay a transaction, its
                # COPYs and upserts and three round trips for every few records.
                stopping.wait(settings.PENDRA_RECORD_WRITER_GATHER_SECONDS)
        self.stdout.write(f"record_writer: {written} entries written")
