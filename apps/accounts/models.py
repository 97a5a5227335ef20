from __future__ import annotations

from django.db import models

from apps.orgs.models import Organisation


class OrgSecurity(models.Model):
    """An organisation's sign-in policy. No row means the defaults: two-factor sign-in is optional."""

    org = models.OneToOneField(Organisation, on_delete=models.CASCADE, primary_key=True, related_name="security")
    require_two_factor = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "org security policies"

    def __str__(self) -> str:
        return f"{self.org_id}: two-factor {'required' if self.require_two_factor else 'optional'}"
