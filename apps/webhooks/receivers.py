"""Events announced by apps below webhooks (they may not import it); connected in ``WebhooksConfig.ready``."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from apps.webhooks.models import EventType
from apps.webhooks.services import emit_event
from apps.workers.models import WorkerState
from apps.workers.signals import worker_state_changed


@receiver(worker_state_changed, dispatch_uid="webhooks.dedicated_worker_unhealthy")
def dedicated_worker_unhealthy(
    sender: Any, *, worker: Any, from_state: str, to_state: str, reason: str, **kwargs: Any
) -> None:
    """Only a dedicated worker's org hears about it: shared workers are the platform's business."""
    if to_state != WorkerState.UNHEALTHY or worker.dedicated_org_id is None:
        return
    emit_event(
        org=worker.dedicated_org,
        event=EventType.WORKER_UNHEALTHY,
        data={"worker": {"id": str(worker.pk), "name": worker.name}, "from_state": from_state, "reason": reason},
    )
