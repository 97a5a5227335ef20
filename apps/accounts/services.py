"""Every change to sign-in policy and to what the console knows about a user's email address."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.db import transaction

from apps.accounts.models import OrgSecurity
from apps.accounts.selectors import user_has_two_factor
from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Organisation
from pendra_console.api.exceptions import ValidationError


@transaction.atomic
def org_two_factor_requirement_set(*, org: Organisation, actor: Any, required: bool) -> OrgSecurity:
    """Require (or stop requiring) two-factor sign-in of every member. Owner-only; the caller checks the role.

    The owner who turns it on must use it already, so the requirement can never lock out
    the only person able to turn it off again.
    """
    if required and not user_has_two_factor(user=actor):
        raise ValidationError({"require_two_factor": "Set up two-factor sign-in for your own account first."})
    security, _ = OrgSecurity.objects.select_for_update().get_or_create(org=org)
    if security.require_two_factor == required:
        return security
    previous = security.require_two_factor
    security.require_two_factor = required
    security.save(update_fields=["require_two_factor", "updated_at"])
    audit(actor, AuditEvent.Type.ORG_CHANGED, org, data={"require_two_factor": {"from": previous, "to": required}})
    return security


@transaction.atomic
def email_address_mark_verified(*, user: Any) -> EmailAddress:
    """Treat the user's email as verified: for accounts made by trusted tooling (seed data, operators' scripts).

    People who sign up themselves verify theirs through the emailed link instead.
    """
    address, _ = EmailAddress.objects.update_or_create(
        user=user, email__iexact=user.email, defaults={"email": user.email, "verified": True, "primary": True}
    )
    return address
