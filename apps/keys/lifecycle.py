"""The keys' life after creation, driven by Celery beat: scheduled rotation, expiry, expiry notices.

Every function here is safe to run twice at once or to rerun after a crash:

- rotation takes each due key under ``select_for_update(skip_locked=True)`` in pk order, so
  two runs split the work instead of waiting on each other, and ``api_key_rotate``'s
  unique ``rotated_from`` makes a second successor impossible;
- expiry is a conditional update (``expired_at IS NULL``) and only the run that changed the
  row (``n == 1``) writes the audit event;
- a notice is a row in ``ExpiryNotice`` (unique per key and threshold) inserted in the same
  transaction that sends the mail, so a concurrent run blocks on the insert and then skips,
  and a failed send rolls the row back for the next run to retry.

Time is a parameter (``now``) so tests can move it instead of sleeping for days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.keys.models import ApiKey, ExpiryNotice
from apps.keys.services import api_key_rotate, key_event_data
from apps.orgs.selectors import owner_emails
from apps.webhooks.models import EventType
from apps.webhooks.services import emit_event
from pendra_console.api.exceptions import Conflict, PermissionDenied, ValidationError

logger = logging.getLogger("pendra.keys.lifecycle")

# Days before ``expires_at`` at which the key's user and the org's owners hear about it.
NOTICE_DAYS = (7, 3, 1)
BATCH = 200  # keys handled per run at most; the next run (a minute later) carries on


@dataclass(frozen=True, slots=True)
class LifecycleSummary:
    expired: int
    notices: int

    def as_dict(self) -> dict[str, int]:
        return {"expired": self.expired, "notices": self.notices}


# --- Scheduled rotation ------------------------------------------------------


def _rotation_due(now: datetime) -> QuerySet[ApiKey]:
    """Keys whose policy says rotate now: (rotated_at or created_at) + N days <= now, no successor yet.

    The period is per key, so the cut-off is built per distinct period (a handful of values
    in practice), which keeps the query portable between PostgreSQL and SQLite.
    """
    # Only usable keys: a successor whose secret was never revealed has none that could have leaked.
    live = ApiKey.objects.usable_at(now).filter(rotate_every_days__isnull=False, expired_at__isnull=True)
    periods = sorted(set(live.values_list("rotate_every_days", flat=True)))
    if not periods:
        return ApiKey.objects.none()
    due = Q()
    for days in periods:
        due |= Q(rotate_every_days=days, anchor__lte=now - timedelta(days=days))
    return (
        live.annotate(anchor=Coalesce("rotated_at", "created_at"))
        .filter(due)
        .filter(~Exists(ApiKey.objects.filter(rotated_from=OuterRef("pk"))))
    )


def rotate_due_keys(*, now: datetime | None = None, limit: int = BATCH) -> list[int]:
    """Rotate every due key once; returns the ids of the successors this run created.

    One transaction per key: a key that cannot be rotated (revoked meanwhile, say) is
    skipped without undoing the others. The successor's secret does not exist yet: its
    user (or an owner/admin) reveals it once through the API.
    """
    now = now or timezone.now()
    created: list[int] = []
    passed: set[int] = set()
    while len(created) + len(passed) < limit:
        with transaction.atomic():
            key = (
                _rotation_due(now)
                .exclude(pk__in=passed)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .first()
            )
            if key is None:
                break
            try:
                with transaction.atomic():
                    successor, _ = api_key_rotate(
                        key=key,
                        actor=None,
                        grace=timedelta(seconds=key.rotation_grace_seconds),
                        reveal_later=True,
                    )
            except (Conflict, ValidationError) as exc:
                # Another run (or a person) got there first, or the key changed under us.
                logger.info("scheduled rotation of key %s skipped: %s", key.pk, exc.detail)
                passed.add(key.pk)
                continue
            except PermissionDenied as exc:
                # The org holds as many working keys as its plan allows: the successor and the old
                # key in its grace would be one more. Tried again next run (a revoked key frees a place).
                logger.warning("scheduled rotation of key %s skipped at the plan's cap: %s", key.pk, exc.detail)
                passed.add(key.pk)
                continue
        created.append(successor.pk)
        logger.info("scheduled rotation: key %s -> successor %s", key.pk, successor.pk)
    return created


# --- Expiry ------------------------------------------------------------------


def _expiry_due(now: datetime) -> QuerySet[ApiKey]:
    return ApiKey.objects.ended_at(now).filter(expired_at__isnull=True)


def mark_expired_keys(*, now: datetime | None = None, limit: int = BATCH) -> int:
    """Record keys past ``expires_at`` or their rotation grace as expired, with one audit event each.

    Authentication already refuses them (it compares the timestamps itself); this makes
    the expiry visible in the audit log and the key list.
    """
    now = now or timezone.now()
    marked = 0
    for key in _expiry_due(now).select_related("org").order_by("pk")[:limit]:
        with transaction.atomic():
            n = ApiKey.objects.filter(pk=key.pk, expired_at__isnull=True).update(expired_at=now)
            if n != 1:
                continue  # another run recorded it
            reason = "expires_at" if key.expires_at is not None and key.expires_at <= now else "rotation grace ended"
            audit(None, AuditEvent.Type.KEY_EXPIRED, key, data={"prefix": key.prefix, "reason": reason})
            if key.org is not None:  # once per key: only the run whose update changed the row gets here
                emit_event(
                    org=key.org, event=EventType.KEY_EXPIRED, data={"key": key_event_data(key), "reason": reason}
                )
        marked += 1
    return marked


# --- Expiry notices ----------------------------------------------------------


def notice_due(*, expires_at: datetime, now: datetime) -> int | None:
    """The tightest threshold (days) the key is inside, or None.

    Only the tightest: a key created two days before it expires gets the 3-day notice,
    not the 7-day one as well; and the skipped wider ones can never become due later.
    """
    left = expires_at - now
    if left <= timedelta(0):
        return None
    inside = [days for days in NOTICE_DAYS if left <= timedelta(days=days)]
    return min(inside) if inside else None


def _recipients(key: ApiKey) -> list[str]:
    emails = {key.user.email} if key.user.email and key.user.is_active else set()
    if key.org_id is not None:
        emails.update(owner_emails(org_id=key.org_id))
    return sorted(emails)


def _notice_message(key: ApiKey, days: int, recipients: list[str]) -> EmailMessage:
    assert key.expires_at is not None
    where = f" in organisation {key.org.slug}" if key.org is not None else ""
    expires = key.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    plural = "day" if days == 1 else "days"
    body = (
        f"The API key {key.name!r} ({key.prefix}_...{key.last_four}) of {key.user.email}{where} "
        f"expires at {expires}, in less than {days} {plural}.\n\n"
        "After that, requests made with it are refused. Create or rotate a key in Pendra Console "
        "and update the programs that use it before then.\n"
    )
    return EmailMessage(
        subject=f"[Pendra] API key {key.name!r} expires in less than {days} {plural}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def send_expiry_notices(*, now: datetime | None = None, limit: int = BATCH) -> int:
    """Send each key's due notice (7, 3 or 1 days before expiry) exactly once; returns how many were sent."""
    now = now or timezone.now()
    candidates = (
        ApiKey.objects.select_related("user", "org")
        .filter(
            revoked_at__isnull=True,
            expired_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(days=max(NOTICE_DAYS)),
        )
        .filter(~Exists(ApiKey.objects.filter(rotated_from=OuterRef("pk"))))
        .order_by("expires_at", "pk")
    )
    sent = 0
    for key in candidates:
        if sent >= limit:
            break
        assert key.expires_at is not None
        days = notice_due(expires_at=key.expires_at, now=now)
        if days is None or ExpiryNotice.objects.filter(api_key=key, days_before=days).exists():
            continue
        recipients = _recipients(key)
        try:
            with transaction.atomic():
                # Insert first: a concurrent run blocks here, then fails the unique constraint and skips.
                first_notice = not ExpiryNotice.objects.filter(api_key=key).exists()
                ExpiryNotice.objects.create(api_key=key, days_before=days)
                if first_notice and key.org is not None:  # key.expiring once per key, with its first notice
                    emit_event(
                        org=key.org,
                        event=EventType.KEY_EXPIRING,
                        data={
                            "key": key_event_data(key),
                            "expires_at": key.expires_at.isoformat(),
                            "days_before": days,
                        },
                    )
                if recipients:
                    # A failed send raises and rolls the row back, so the next run tries again.
                    _notice_message(key, days, recipients).send(fail_silently=False)
        except IntegrityError:
            continue
        sent += 1
        logger.info("expiry notice: key %s, %d days before, %d recipients", key.pk, days, len(recipients))
    return sent


def expire_and_notify(*, now: datetime | None = None) -> LifecycleSummary:
    """The periodic task's body: record expiries, then send the notices that are due."""
    now = now or timezone.now()
    return LifecycleSummary(expired=mark_expired_keys(now=now), notices=send_expiry_notices(now=now))
