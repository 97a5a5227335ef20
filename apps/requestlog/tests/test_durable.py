"""The durable hand-off: what a web process answered survives its death, billed exactly once.

Each test starts real uvicorn processes (``testing.live.ServerProcesses``) on the session's
PostgreSQL and Redis, with ``PENDRA_RECORD_HANDOFF=redis``; records reach the database only
through ``manage.py record_writer``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from apps.requestlog import handoff
from apps.requestlog.models import RequestRecord, UsageRecord
from apps.requestlog.writer import write_records
from testing import servers
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

# Each test starts server processes of its own: slow on a busy machine.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
ROOT = Path(django_settings.BASE_DIR)


@pytest.fixture
def web_env(stream: redis.Redis) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        "PENDRA_RECORD_HANDOFF": "redis",
        # The in-process writer (for records Redis refused) would hold them this long: a kill loses those.
        "PENDRA_RECORD_FLUSH_SECONDS": "60",
    }


def _answered(url: str, key: str, count: int, **headers: str) -> tuple[list[str], list[str]]:
    ok, failed = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}", **headers}, timeout=60) as http:
        for _ in range(count):
            response = http.post("/v1/chat/completions", json=CHAT)
            (ok if response.status_code == 200 else failed).append(response.headers["x-request-id"])
    return ok, failed


def _record_writer(*args: str) -> str:
    out = StringIO()
    call_command("record_writer", "--once", *args, stdout=out)
    return out.getvalue()


def _records_per_request(request_ids: list[str]) -> Counter[str]:
    return Counter(RequestRecord.objects.filter(request_id__in=request_ids).values_list("request_id", flat=True))


def _usage_per_request(request_ids: list[str]) -> Counter[str]:
    return Counter(UsageRecord.objects.filter(request_id__in=request_ids).values_list("request_id", flat=True))


def test_a_sigkilled_web_process_loses_no_record_it_answered_and_bills_each_once(
    web_env: dict[str, str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    register_sim(simulator("sim-a"))
    web = ServerProcesses(web_env)
    with web as [url]:
        ok, _ = _answered(url, owner.key, 20)
        _, failed = _answered(url, owner.key, 5, **{"x-sim-status": "500"})
        web.signal(0, signal.SIGKILL).wait(timeout=10)
    answered = ok + failed
    assert (len(ok), len(failed)) == (20, 5)

    _record_writer()
    _record_writer()  # a second pass over the same stream writes nothing twice

    assert _records_per_request(answered) == Counter(answered)
    assert _usage_per_request(answered) == Counter(ok)


def test_a_sigterm_lets_requests_in_flight_finish_and_keeps_their_records(
    web_env: dict[str, str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    register_sim(simulator("sim-a"))
    results: dict[str, httpx.Response] = {}
    streamed: list[bytes] = []
    auth = {"Authorization": f"Bearer {owner.key}"}

    def plain() -> None:
        with httpx.Client(timeout=60) as http:
            results["plain"] = http.post(
                f"{url}/v1/chat/completions", json=CHAT, headers={**auth, "x-sim-latency-ms": "1500"}
            )

    def stream_chat() -> None:
        body = {**CHAT, "stream": True, "max_tokens": 30}
        headers = {**auth, "x-sim-chunk-delay-ms": "60"}
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response,
        ):
            results["stream"] = response
            streamed.extend(response.iter_bytes())

    web = ServerProcesses(web_env)
    with web as [url]:
        clients = [threading.Thread(target=plain), threading.Thread(target=stream_chat)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while not ("stream" in results and streamed) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert streamed, "the stream never started"
        process = web.signal(0, signal.SIGTERM)
        for client in clients:
            client.join(timeout=60)
        # uvicorn exits by the signal it caught once the requests are done (returncode -15).
        assert process.wait(timeout=30) == -signal.SIGTERM

    assert results["plain"].status_code == 200
    assert results["stream"].status_code == 200
    assert b"data: [DONE]" in b"".join(streamed)
    finished = [results["plain"].headers["x-request-id"], results["stream"].headers["x-request-id"]]
    _record_writer()
    assert _records_per_request(finished) == Counter(finished)
    assert _usage_per_request(finished) == Counter(finished)


def test_a_writer_killed_mid_batch_leaves_its_entries_to_another_and_nothing_is_written_twice(
    web_env: dict[str, str], stream: redis.Redis, owner: Actor, simulator: Any, register_sim: Any, settings: Any
) -> None:
    register_sim(simulator("sim-a"))
    with ServerProcesses(web_env) as [url]:
        ok, _ = _answered(url, owner.key, 30)
    assert stream.xlen(handoff.STREAM) == 30
    env = {**web_env, "PENDRA_RECORD_WRITER_BATCH": "10"}
    command = [sys.executable, str(ROOT / "manage.py"), "record_writer"]
    # The table locked: the writer reads a batch of ten and waits in its COPY, holding them unacknowledged.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {RequestRecord._meta.db_table} IN EXCLUSIVE MODE")
        writer = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while stream.xpending(handoff.STREAM, handoff.GROUP)["pending"] == 0:
                assert time.monotonic() < deadline, "the writer never read a batch"
                time.sleep(0.05)
            time.sleep(0.3)  # inside its write now
        finally:
            writer.kill()
            writer.wait(timeout=10)
    held = stream.xpending(handoff.STREAM, handoff.GROUP)
    assert held["pending"] == 10
    assert not RequestRecord.objects.filter(request_id__in=ok).exists()

    # Another writer, once the dead one's entries have been idle long enough, claims them.
    settings.PENDRA_RECORD_CLAIM_IDLE = 0.2
    time.sleep(0.3)
    _record_writer()

    assert _records_per_request(ok) == Counter(ok)
    assert _usage_per_request(ok) == Counter(ok)
    assert stream.xlen(handoff.STREAM) == 0
    assert stream.xpending(handoff.STREAM, handoff.GROUP)["pending"] == 0


def test_entries_written_but_never_acknowledged_are_written_again_without_a_duplicate(
    web_env: dict[str, str], stream: redis.Redis, owner: Actor, simulator: Any, register_sim: Any, settings: Any
) -> None:
    """A writer killed between its commit and its XACK: the claimed entries bill nothing twice."""
    register_sim(simulator("sim-a"))
    with ServerProcesses(web_env) as [url]:
        ok, _ = _answered(url, owner.key, 8)
    # What the dead writer did: read the entries, committed their rows, died before XACK.
    taken = stream.xreadgroup(handoff.GROUP, "dead-writer:1", {handoff.STREAM: ">"}, count=100)
    entries = [handoff.decode(fields[handoff.FIELD]) for _, fields in taken[0][1]]
    write_records([record for record, _ in entries], [usage for _, usage in entries if usage is not None])
    assert _records_per_request(ok) == Counter(ok)

    settings.PENDRA_RECORD_CLAIM_IDLE = 0.1
    time.sleep(0.2)
    assert "8 entries written" in _record_writer()

    assert _records_per_request(ok) == Counter(ok)
    assert _usage_per_request(ok) == Counter(ok)
    assert stream.xlen(handoff.STREAM) == 0


def test_record_writer_refuses_to_run_without_the_durable_hand_off(settings: Any) -> None:
    settings.PENDRA_RECORD_HANDOFF = "memory"
    with pytest.raises(CommandError, match="REDIS_URL"):
        call_command("record_writer", "--once")


def test_with_redis_stopped_answered_requests_are_recorded_by_the_process_and_the_stream_resumes(
    redis_required: None, owner: Actor, simulator: Any, register_sim: Any, settings: Any
) -> None:
    """Fail-open, as README says: answered requests keep their records (written by the web
    process itself) while Redis is down, and go through the stream again once it is back."""
    register_sim(simulator("sim-a"))
    workdir = tempfile.mkdtemp(prefix="pendra-durable-redis-")
    port = servers.free_port()
    own_redis = servers.start_redis_at(port, workdir)
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": redis_url,
        "PENDRA_RECORD_HANDOFF": "redis",
        "PENDRA_LOG_LEVEL": "CRITICAL",
    }
    try:
        with ServerProcesses(env) as [url]:
            before, _ = _answered(url, owner.key, 5)
            own_redis.terminate()
            own_redis.wait(timeout=10)
            during, _ = _answered(url, owner.key, 5)
            deadline = time.monotonic() + 30
            while RequestRecord.objects.filter(request_id__in=during).count() < 5:
                assert time.monotonic() < deadline, "records answered while Redis was down are missing"
                time.sleep(0.1)
            own_redis = servers.start_redis_at(port, workdir)
            after, _ = _answered(url, owner.key, 5)
        assert (len(before), len(during), len(after)) == (5, 5, 5)
        assert redis.Redis.from_url(redis_url).xlen(handoff.STREAM) == 5  # the last five: the stream again
    finally:
        own_redis.kill()
        own_redis.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    assert _records_per_request(during) == Counter(during)
    assert _usage_per_request(during) == Counter(during)
