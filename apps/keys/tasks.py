"""Celery tasks for API keys: thin wrappers over :mod:`apps.keys.lifecycle`, run by beat every minute.

Both are safe to run twice or at once (see lifecycle.py), so they need no retries: the
next beat tick is the retry. ``rotate_due`` is ``acks_late``: if its worker dies mid-rotation
the transaction rolls back and the message is delivered again (after the broker's visibility
timeout), which apps/keys/tests/test_tasks.py shows by killing a worker with SIGKILL.
``expire_and_notify`` is not: a redelivery could only repeat a mail whose row committed
after the send, and the next tick picks up anything left undone.
"""

from __future__ import annotations

from celery import shared_task

from apps.keys import lifecycle


@shared_task(name="keys.rotate_due", acks_late=True, soft_time_limit=45, time_limit=60)
def rotate_due() -> int:
    return len(lifecycle.rotate_due_keys())


@shared_task(name="keys.expire_and_notify", soft_time_limit=45, time_limit=60)
def expire_and_notify() -> dict[str, int]:
    return lifecycle.expire_and_notify().as_dict()
