"""The soak (``make soak``), bounded: the whole system under mixed load and faults keeps its books.

``bench/soak.py`` starts its own PostgreSQL, Redis, two web processes, the record writer,
Celery worker and beat and two simulators, and exits non-zero if an answered request lacks
its one record, usage differs from the successes, anything answered or recorded a 500, a
process died or a process's memory grew 10 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from testing.require import require_service


@pytest.mark.timeout(600)
def test_a_bounded_soak_keeps_every_record_bills_exactly_the_successes_and_answers_no_500() -> None:
    require_service(bool(os.environ.get("REDIS_URL")), "redis-server")
    duration = os.environ.get("PENDRA_SOAK_TEST_SECONDS", "40")
    done = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "bench" / "soak.py"), "--duration", duration],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PASS: every answered request has exactly one record" in done.stdout
    assert "PASS: usage rows = successes" in done.stdout
