"""The audit log's one write: ``audit(actor, action, target)``.

Every app records its changes here, inside the transaction of the change, so a rule
and its record are never separated. This module imports no domain app: it names the
target from the object itself.

- ``target_type`` is the model's ``audit_type`` if it declares one (``"api_key"``,
  ``"org"``), else its model name (``"membership"``, ``"worker"``, ``"user"``);
- ``target_id`` is its ``audit_id`` if it declares one (a plan's slug), else its pk;
- the event belongs to the org given, else to the target's ``audit_org`` (an
  organisation is its own), else to ``target.org``, else to no org (platform events).

A target that is not a row (a request id) is passed as :class:`Ref`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.audit.models import AuditEvent
from pendra_console.request_id import current_request_id


@dataclass(frozen=True, slots=True)
class Ref:
    """A target that is not a model instance, e.g. ``Ref("request", request_id)``."""

    type: str
    id: str


class _TargetsOrg:
    def __repr__(self) -> str:
        return "the target's org"


TARGETS_ORG: Any = _TargetsOrg()


def _target_type(target: Any) -> str:
    if target is None:
        return ""
    if isinstance(target, Ref):
        return target.type
    return getattr(target, "audit_type", None) or target._meta.model_name


def _target_id(target: Any) -> str:
    if target is None:
        return ""
    if isinstance(target, Ref):
        return target.id
    return str(getattr(target, "audit_id", None) or target.pk)


def _org_of(target: Any) -> Any:
    if target is None or isinstance(target, Ref):
        return None
    if hasattr(target, "audit_org"):
        return target.audit_org
    return getattr(target, "org", None)


def audit(
    actor: Any, action: str, target: Any, *, org: Any = TARGETS_ORG, data: dict[str, Any] | None = None
) -> AuditEvent:
    """One audit line; the request id ties it to the access log. Never pass a secret in ``data``.

    ``actor`` is the user who acted, or None for the system (a scheduled task); ``action``
    an :class:`AuditEvent.Type`.
    """
    request_id = current_request_id.get()
    return AuditEvent.objects.create(
        event_type=action,
        org=_org_of(target) if org is TARGETS_ORG else org,
        actor=actor if getattr(actor, "pk", None) else None,
        target_type=_target_type(target),
        target_id=_target_id(target),
        data=data or {},
        request_id="" if request_id == "-" else request_id,
    )
