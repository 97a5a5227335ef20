"""``manage.py seed_demo [--json]``: the demo org "demo" with one user per role and a fresh key each.

Idempotent: users, the org and memberships are reused (passwords reset to the known
demo values); only the keys are new on every run, because a key is shown once, and the
previous run's demo keys are revoked.
"""

from __future__ import annotations

import json
from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.keys.models import ApiKey
from apps.keys.services import api_key_create, api_key_revoke
from apps.orgs.models import Membership, Organisation, Role
from apps.orgs.services import membership_add, membership_change_role, org_create, platform_role_grant

DEMO_SLUG = "demo"
DEMO_USERS = {
    "owner": ("owner@demo.pendra.localhost", "demo-owner-pass"),
    "admin": ("admin@demo.pendra.localhost", "demo-admin-pass"),
    "member": ("member@demo.pendra.localhost", "demo-member-pass"),
    "support": ("support@pendra.localhost", "demo-support-pass"),
    "operator": ("operator@pendra.localhost", "demo-operator-pass"),
}
ORG_ROLES = {"owner": Role.OWNER, "admin": Role.ADMIN, "member": Role.MEMBER}


class Command(BaseCommand):
    help = "Create (or reuse) the demo organisation and its users, and mint a fresh API key for each."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="print one JSON object (org, users, keys)"
        )

    @transaction.atomic
    def handle(self, *args: Any, as_json: bool = False, **options: Any) -> None:
        users = {name: self._user(email, password) for name, (email, password) in DEMO_USERS.items()}
        owner = users["owner"]
        org = Organisation.objects.filter(slug=DEMO_SLUG).first()
        if org is None:
            org = org_create(name="Demo", slug=DEMO_SLUG, owner=owner)
        for name, role in ORG_ROLES.items():
            membership = Membership.objects.filter(org=org, user=users[name]).first()
            if membership is None:
                membership_add(org=org, user=users[name], role=role, actor=owner)
            elif membership.role != role:
                membership_change_role(membership=membership, role=role, actor=owner)
        for name in ("support", "operator"):
            platform_role_grant(user=users[name], role=name, actor=None)

        keys: dict[str, str] = {}
        for name, user in users.items():
            key_org = org if name in ORG_ROLES else None  # platform staff keys belong to no org
            # The previous run's demo key is retired, so reruns never pile up against the plan's key cap.
            for old in ApiKey.objects.filter(user=user, org=key_org, name=f"demo {name}", revoked_at__isnull=True):
                api_key_revoke(key=old, actor=user, reason="replaced by seed_demo")
            _, keys[name] = api_key_create(org=key_org, user=user, actor=user, name=f"demo {name}")

        result = {
            "org": org.slug,
            "users": {name: {"email": email, "password": password} for name, (email, password) in DEMO_USERS.items()},
            "keys": keys,
        }
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"Demo organisation {org.slug!r}:")
        for name, (email, password) in DEMO_USERS.items():
            self.stdout.write(f"  {name:9} {email} / {password}  key: {keys[name]}")

    def _user(self, email: str, password: str) -> Any:
        user_model = get_user_model()
        user = user_model.objects.filter(username=email).first()
        if user is None:
            user = user_model.objects.create_user(username=email, email=email, password=password)
        else:
            user.set_password(password)
            user.is_active = True
            user.save(update_fields=["password", "is_active"])
        # Demo addresses cannot receive mail; they count as verified so the demo users can sign in.
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        return user
