"""Reads of the audit log, each scoped to an organisation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent


def org_audit_events(
    *,
    org: Any,
    actor_id: int | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor").filter(org=org)
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if event_type:
        events = events.filter(event_type=event_type)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events.order_by("-created_at", "-id")


def recent_lookups(*, actor: Any, limit: int = 10) -> list[AuditEvent]:
    """The request ids this staff member looked up last, newest first."""
    return list(
        AuditEvent.objects.filter(actor=actor, event_type=AuditEvent.Type.REQUEST_LOOKED_UP).order_by(
            "-created_at", "-id"
        )[:limit]
    )


def platform_audit_events(*, event_type: str | None = None) -> QuerySet[AuditEvent]:
    """Events outside any org (request lookups, worker and plan edits): for operators only."""
    events = AuditEvent.objects.select_related("actor").filter(org__isnull=True)
    if event_type:
        events = events.filter(event_type=event_type)
    return events.order_by("-created_at", "-id")
