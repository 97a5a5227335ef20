"""No plaintext key or invitation token anywhere at rest: not in any text column, not in any log line."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.db.models.functions import Cast

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.keys.services import api_key_rotate
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"
_TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def _tables_containing(secret: str) -> list[str]:
    hits = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, _TEXT_FIELDS):
                continue
            # JSON is searched as its text, so a secret nested anywhere in a document is found too.
            rows = model.objects.annotate(_text=Cast(field.name, models.TextField())).filter(_text__contains=secret)
            if rows.exists():
                hits.append(f"{model._meta.db_table}.{field.column}")
    return hits


def test_no_secret_is_stored_or_logged(owner: Actor, member: Actor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [owner.key, member.key]
    client = member.client()
    created = client.post(f"{ORG}/keys/", {"name": "ci"}, format="json").json()
    secrets.append(created["key"])
    rotated = client.post(f"{ORG}/keys/{created['id']}/rotate/", {"grace_seconds": 60}, format="json").json()
    secrets.append(rotated["key"])
    successor, _ = api_key_rotate(key=member.api_key, actor=None, grace=timedelta(hours=1), reveal_later=True)
    revealed = client.post(f"{ORG}/keys/{successor.pk}/reveal/").json()
    secrets.append(revealed["key"])
    invited = owner.client().post(f"{ORG}/invitations/", {"email": "i@x.test", "role": "member"}, format="json")
    secrets.append(invited.json()["token"])
    client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {rotated['key']}")
    client.get("/api/v1/me", HTTP_X_API_KEY=secrets[0][:-1] + "x")  # a rejected key must not be logged either

    logged = "\n".join(
        [caplog.text, *(record.getMessage() for record in caplog.records), *(str(r.__dict__) for r in caplog.records)]
    )
    for secret in secrets:
        # A key's random part alone, without prefix or checksum; an invitation token is random throughout
        # (and may end in "_", which would leave an empty "body" that every row contains).
        body = secret.rsplit("_", 1)[-1][:32] if secret.startswith("pnd_") else secret
        assert _tables_containing(secret) == []
        assert _tables_containing(body) == []
        assert secret not in logged
        assert body not in logged


def test_the_search_would_find_a_stored_secret(member: Actor) -> None:
    """The search above is only worth something if it can fail."""
    audit(member.user, AuditEvent.Type.KEY_CHANGED, member.api_key, data={"oops": member.key})
    assert _tables_containing(member.key) == ["orgs_auditevent.data"]


def test_a_list_response_reveals_nothing_secret(member: Actor) -> Any:
    listed = member.client().get(f"{ORG}/keys/").content.decode()
    assert member.key not in listed
    assert member.api_key.secret_hash not in listed
