"""Celery task for request-record retention, run hourly by beat.

Deleting rows already deleted is a no-op, so reruns and overlaps are harmless; the
service deletes in bounded batches and the next run carries on where one stopped.
"""

from __future__ import annotations

from celery import shared_task

from apps.requestlog.services import delete_expired_records


@shared_task(name="requestlog.delete_expired", soft_time_limit=300, time_limit=360)
def delete_expired() -> int:
    return delete_expired_records()
