"""What the fleet does when something it depends on changes elsewhere; connected in ``WorkersConfig.ready``.

Deleting an organisation sets its dedicated workers' ``dedicated_org`` to NULL inside the
delete (``on_delete=SET_NULL``): no service of this app runs, so this receiver announces the
fleet's change, and every gateway process routes the now shared workers within a second
instead of after its watched cache's minutes.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from apps.orgs.models import Organisation
from apps.workers.models import Worker
from pendra_console import epochs


@receiver(pre_delete, sender=Organisation, dispatch_uid="workers.announce_freed_dedicated_workers")
def announce_freed_dedicated_workers(sender: Any, instance: Organisation, **kwargs: Any) -> None:
    if Worker.objects.filter(dedicated_org=instance).exists():
        epochs.changed(epochs.FLEET)  # after the delete commits, like every other fleet change
