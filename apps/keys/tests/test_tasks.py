"""Scheduled rotation, expiry and expiry notices, run by a real Celery worker process on Redis.

Nothing is eager: tasks go through the broker to a ``celery worker`` subprocess that uses
the test database (testing/celery.py). Concurrency is made deterministic by locking the
audit table from a second database connection: a rotation blocks on it mid-transaction
(after creating the successor), while the test watches or kills the worker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.keys.lifecycle import notice_due
from apps.keys.models import ApiKey, ExpiryNotice
from apps.keys.services import api_key_create, api_key_update
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor

GRACE_SECONDS = 3


def _due_key(actor: Actor, *, name: str = "ci", grace_seconds: int = GRACE_SECONDS) -> tuple[ApiKey, str]:
    """A key whose weekly rotation is a minute overdue."""
    key, plaintext = api_key_create(
        org=actor.org,
        user=actor.user,
        actor=actor.user,
        name=name,
        rotate_every_days=7,
        rotation_grace_seconds=grace_seconds,
    )
    ApiKey.objects.filter(pk=key.pk).update(created_at=timezone.now() - timedelta(days=7, minutes=1))
    return key, plaintext


def _conninfo() -> str:
    assert connection.vendor == "postgresql", "these tests hold row locks: they need the session's PostgreSQL"
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None, dbname=db["NAME"]
    )


@contextmanager
def audit_log_locked() -> Iterator[psycopg.Connection[Any]]:
    """Hold a SHARE lock on the audit table from another connection.

    A rotation writes its audit event last, after creating the successor and updating the
    key, so it waits here in the middle of its transaction, holding the key's row lock.
    (A row lock on the org would not do: PostgreSQL checks Django's deferred foreign keys
    only at COMMIT, and a client killed during COMMIT still commits.)
    """
    with psycopg.connect(_conninfo()) as other, other.transaction():
        other.execute("LOCK TABLE orgs_auditevent IN SHARE MODE")
        yield other


def _wait_for_lock_waiter(observer: psycopg.Connection[Any], *, present: bool, timeout: float = 20.0) -> None:
    """Wait until some backend of the test database is (or no longer is) waiting on a row lock."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(_conninfo(), autocommit=True) as probe:
            waiting = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        if bool(waiting and waiting[0]) == present:
            return
        assert time.monotonic() < deadline, f"no backend {'started' if present else 'stopped'} waiting for a lock"
        time.sleep(0.05)


def _rotation_state(key: ApiKey) -> dict[str, Any]:
    """What a finished scheduled rotation leaves behind, independent of ids and clock."""
    key.refresh_from_db()
    successors = list(ApiKey.objects.filter(rotated_from=key))
    events = AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_ROTATED, target_id=str(key.pk))
    return {
        "successors": len(successors),
        "awaiting_reveal": [s.awaiting_reveal for s in successors],
        "successor_has_secret": [bool(s.secret_hash) for s in successors],
        "successor_policy": [(s.rotate_every_days, s.rotation_grace_seconds, s.user_id) for s in successors],
        "grace": (key.grace_until - key.rotated_at) if key.grace_until and key.rotated_at else None,
        "rotated_events": events.count(),
        "scheduled": [e.data.get("scheduled") for e in events],
    }


def _me(raw_key: str, api: Any) -> int:
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return int(api.get("/api/v1/me").status_code)


def test_two_concurrent_rotation_runs_create_exactly_one_successor(celery_stack: Any, owner: Actor) -> None:
    key, _ = _due_key(owner)
    stack = celery_stack()
    worker = stack.worker(concurrency=2)

    with audit_log_locked() as observer:
        first, second = stack.send("keys.rotate_due"), stack.send("keys.rotate_due")
        _wait_for_lock_waiter(observer, present=True)
        # While one run holds the key (blocked mid-rotation), the other skips it and finishes with 0.
        finished = worker.wait_for_log(
            rf"Task keys\.rotate_due\[({first}|{second})\] succeeded in [^:]+: 0\b", timeout=20
        )
        assert ApiKey.objects.filter(rotated_from=key).count() == 0
    blocked = second if finished.group(1) == first else first
    assert worker.wait_for_task(blocked).endswith(": 1")

    rerun = stack.send("keys.rotate_due")
    assert worker.wait_for_task(rerun).endswith(": 0")
    assert _rotation_state(key)["successors"] == 1
    assert _rotation_state(key)["rotated_events"] == 1


def test_scheduled_successor_is_revealed_once_and_the_old_secret_stops_after_the_grace(
    celery_stack: Any, owner: Actor, api: Any
) -> None:
    key, old_secret = _due_key(owner, grace_seconds=GRACE_SECONDS)
    stack = celery_stack()
    worker = stack.worker()

    worker.wait_for_task(stack.send("keys.rotate_due"))
    successor = ApiKey.objects.get(rotated_from=key)
    assert successor.awaiting_reveal and not successor.secret_hash  # no secret exists to mail or log
    assert _me(old_secret, api) == 200  # inside the grace period

    reveal_url = f"/api/v1/orgs/{owner.org.slug}/keys/{successor.pk}/reveal/"
    revealed = owner.client().post(reveal_url)
    assert revealed.status_code == 200
    new_secret = revealed.json()["key"]
    assert owner.client().post(reveal_url).status_code == 410
    assert _me(new_secret, api) == 200

    key.refresh_from_db()
    time.sleep(max(0.0, (key.grace_until - timezone.now()).total_seconds()) + 0.2)
    assert _me(old_secret, api) == 401
    assert _me(new_secret, api) == 200
    assert new_secret not in worker.log()
    assert stack.mails() == []


def test_a_scheduled_rotation_at_the_plans_key_cap_is_skipped_and_the_key_keeps_working(
    celery_stack: Any, owner: Actor, api: Any
) -> None:
    key, secret = _due_key(owner)
    # The owner's own key and the due key: the successor, with the old key in its grace, would be a third.
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Tiny", max_keys=2), "since": timezone.now()}
    )
    stack = celery_stack()
    worker = stack.worker()

    worker.wait_for_task(stack.send("keys.rotate_due"))

    assert not ApiKey.objects.filter(rotated_from=key).exists()
    assert ApiKey.objects.filter(org=owner.org).held_at(timezone.now()).count() == 2
    assert _me(secret, api) == 200


def test_a_rotation_killed_mid_transaction_is_redelivered_and_ends_like_an_uninterrupted_one(
    celery_stack: Any, owner: Actor
) -> None:
    visibility = 2
    # Webhook retries must wait less than the visibility timeout (settings refuse otherwise).
    stack = celery_stack(PENDRA_CELERY_VISIBILITY_TIMEOUT=str(visibility), PENDRA_WEBHOOK_RETRY_MAX_SECONDS="1")

    control, _ = _due_key(owner, name="control")
    worker = stack.worker()
    worker.wait_for_task(stack.send("keys.rotate_due"))
    uninterrupted = _rotation_state(control)

    key, _ = _due_key(owner, name="killed")
    with audit_log_locked() as observer:
        task_id = stack.send("keys.rotate_due")
        _wait_for_lock_waiter(observer, present=True)
        sent_at = time.monotonic()
        worker.kill()  # SIGKILL: the rotation's transaction never commits, the message is never acknowledged
    # Its database session notices the lost client once the lock is free, and rolls back.
    _wait_for_lock_waiter(observer, present=False)
    assert _rotation_state(key)["successors"] == 0
    assert not re.search(rf"\[{task_id}\] succeeded", worker.log())

    # The broker hands the unacknowledged message out again once the visibility timeout passed.
    time.sleep(max(0.0, visibility + 0.5 - (time.monotonic() - sent_at)))
    restarted = stack.worker()
    assert restarted.wait_for_task(task_id, timeout=30).endswith(": 1")

    assert _rotation_state(key) == uninterrupted
    assert _rotation_state(control) == uninterrupted


def _set_expiry(key: ApiKey, left: timedelta) -> None:
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + left)


def _notices(stack: Any, key: ApiKey) -> list[tuple[str, str]]:
    """(subject, recipients) of every mail about ``key``."""
    return [
        (str(mail["Subject"]), str(mail["To"]))
        for mail in stack.mails()
        if f"pnd_{key.public_id}_" in mail.get_payload()
    ]


def _run(stack: Any, worker: Any, times: int) -> None:
    for _ in range(times):
        worker.wait_for_task(stack.send("keys.expire_and_notify"))


def test_expiry_notices_are_sent_once_at_seven_three_and_one_days(
    celery_stack: Any, owner: Actor, member: Actor
) -> None:
    stack = celery_stack()
    worker = stack.worker()
    key = member.api_key
    recipients = "member@acme.test, owner@acme.test"

    _set_expiry(key, timedelta(days=6, hours=12))
    _run(stack, worker, 3)
    assert _notices(stack, key) == [(f"[Pendra] API key {key.name!r} expires in less than 7 days", recipients)]

    _set_expiry(key, timedelta(days=2, hours=12))
    _run(stack, worker, 3)
    _set_expiry(key, timedelta(hours=12))
    _run(stack, worker, 3)

    assert [subject for subject, _ in _notices(stack, key)] == [
        f"[Pendra] API key {key.name!r} expires in less than 7 days",
        f"[Pendra] API key {key.name!r} expires in less than 3 days",
        f"[Pendra] API key {key.name!r} expires in less than 1 day",
    ]
    assert {to for _, to in _notices(stack, key)} == {recipients}
    assert sorted(ExpiryNotice.objects.filter(api_key=key).values_list("days_before", flat=True)) == [1, 3, 7]


def test_a_key_created_inside_the_three_day_window_gets_only_the_tightest_notice(
    celery_stack: Any, owner: Actor
) -> None:
    stack = celery_stack()
    worker = stack.worker()
    key, _ = api_key_create(
        org=owner.org, user=owner.user, actor=owner.user, name="short", expires_at=timezone.now() + timedelta(days=2)
    )

    _run(stack, worker, 2)

    assert _notices(stack, key) == [("[Pendra] API key 'short' expires in less than 3 days", "owner@acme.test")]


def test_an_expired_key_is_refused_at_once_and_recorded_once(
    celery_stack: Any, live: Any, member: Actor, api: Any
) -> None:
    stack = celery_stack()
    worker = stack.worker()
    # Long enough for both warm-up calls below even on a loaded machine (2 s was not, at load 12).
    expires_at = timezone.now() + timedelta(seconds=5)
    api_key_update(key=member.api_key, actor=member.user, expires_at=expires_at)
    headers = {"Authorization": f"Bearer {member.key}"}
    # Both paths know the key (the gateway keeps it in its in-process cache) before it expires.
    assert _me(member.key, api) == 200
    assert httpx.get(f"{live.url}/v1/models", headers=headers, timeout=10).status_code == 200

    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)

    # Authentication compares the timestamps itself: refused before any task has run.
    assert _me(member.key, api) == 401
    assert httpx.get(f"{live.url}/v1/models", headers=headers, timeout=10).status_code == 401
    assert not ApiKey.objects.filter(pk=member.api_key.pk, expired_at__isnull=False).exists()
    _run(stack, worker, 3)
    member.api_key.refresh_from_db()
    assert member.api_key.expired_at is not None
    events = AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_EXPIRED, target_id=str(member.api_key.pk))
    assert [e.data["reason"] for e in events] == ["expires_at"]
    assert _notices(stack, member.api_key) == []


def test_a_rotated_key_is_recorded_expired_when_its_grace_ends(celery_stack: Any, owner: Actor) -> None:
    key, _ = _due_key(owner, grace_seconds=1)
    stack = celery_stack()
    worker = stack.worker()
    worker.wait_for_task(stack.send("keys.rotate_due"))
    _run(stack, worker, 1)
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_EXPIRED).exists()

    time.sleep(1.2)
    _run(stack, worker, 2)

    events = AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_EXPIRED, target_id=str(key.pk))
    assert [e.data["reason"] for e in events] == ["rotation grace ended"]


def test_beat_rotates_a_due_key_and_records_expiries_without_anyone_sending_a_task(
    celery_stack: Any, owner: Actor
) -> None:
    key, _ = _due_key(owner, grace_seconds=0)
    stack = celery_stack(PENDRA_KEY_LIFECYCLE_INTERVAL="0.5", PENDRA_HEALTH_INTERVAL="3600")
    stack.worker()
    stack.beat()

    deadline = time.monotonic() + 20
    while not AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_EXPIRED, target_id=str(key.pk)).exists():
        assert time.monotonic() < deadline, "beat did not rotate and expire the key"
        time.sleep(0.1)
    time.sleep(1.5)  # three more ticks of both tasks change nothing

    assert _rotation_state(key)["successors"] == 1
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_EXPIRED, target_id=str(key.pk)).count() == 1


def test_every_periodic_task_finishes_well_inside_the_brokers_visibility_timeout() -> None:
    from pendra_console.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {
        "workers.health_sweep",
        "keys.rotate_due",
        "keys.expire_and_notify",
        "requestlog.delete_expired",
        "webhooks.send_stale",
    }
    for name in scheduled:
        task = app.tasks[name]
        assert 0 < task.soft_time_limit < task.time_limit < settings.CELERY_VISIBILITY_TIMEOUT, name


@pytest.mark.parametrize(
    ("left", "notice"),
    [
        (timedelta(days=8), None),
        (timedelta(days=7, seconds=1), None),
        (timedelta(days=7), 7),
        (timedelta(days=3, hours=12), 7),
        (timedelta(days=3), 3),
        (timedelta(days=1, seconds=1), 3),
        (timedelta(days=1), 1),
        (timedelta(minutes=5), 1),
        (timedelta(0), None),
        (timedelta(hours=-1), None),
    ],
)
def test_the_notice_due_is_the_tightest_threshold_the_key_is_inside(left: timedelta, notice: int | None) -> None:
    now = timezone.now()
    assert notice_due(expires_at=now + left, now=now) == notice
