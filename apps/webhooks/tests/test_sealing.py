"""Signing secrets are sealed at rest: the database holds none in the clear, and a new sealing key loses none."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.webhooks.models import Endpoint

ROUTE = "/api/v1/orgs/acme/webhooks/"
GOOD = {"url": "https://hooks.example.com/pendra", "events": ["key.rotated"]}


def _stored_secrets() -> list[str]:
    """The secret column as the database holds it, bypassing the model."""
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(Endpoint._meta.db_table)
        cursor.execute(f"SELECT secret FROM {table}")  # noqa: S608  (the model's own table name)
        return [row[0] for row in cursor.fetchall()]


def test_the_database_holds_no_signing_secret_in_the_clear(owner, public_dns) -> None:
    created = owner.client().post(ROUTE, GOOD, format="json").json()

    [stored] = _stored_secrets()
    revealed = owner.client().post(f"{ROUTE}{created['id']}/secret/").json()["secret"]

    assert created["secret"].startswith("whsec_")
    assert created["secret"] not in stored
    assert created["secret"].removeprefix("whsec_") not in stored
    assert stored.startswith("sealed:")
    assert revealed == created["secret"]


def test_a_new_sealing_key_keeps_every_secret_and_after_resealing_the_old_one_may_go(
    owner, public_dns, settings
) -> None:
    settings.PENDRA_SEALING_KEYS = ["the-old-sealing-key"]
    client = owner.client()
    created = client.post(ROUTE, GOOD, format="json").json()
    reveal = f"{ROUTE}{created['id']}/secret/"
    [sealed_with_old] = _stored_secrets()

    settings.PENDRA_SEALING_KEYS = ["the-new-sealing-key", "the-old-sealing-key"]
    during = client.post(reveal).json()["secret"]
    out = StringIO()
    call_command("reseal_secrets", stdout=out)
    [sealed_with_new] = _stored_secrets()
    settings.PENDRA_SEALING_KEYS = ["the-new-sealing-key"]
    after = client.post(reveal).json()["secret"]

    assert during == after == created["secret"]
    assert "Sealed 1 webhook signing secret(s)" in out.getvalue()
    assert sealed_with_new != sealed_with_old
    settings.PENDRA_SEALING_KEYS = ["the-old-sealing-key"]  # the new key lost: nothing opens, and it says why
    with pytest.raises(ImproperlyConfigured, match="No key in PENDRA_SEALING_KEYS opens a stored secret"):
        call_command("reseal_secrets", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_migrating_seals_the_secrets_stored_before_and_migrating_back_opens_them(owner) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("webhooks", "0001_initial")])
    old_apps = executor.loader.project_state([("webhooks", "0001_initial")]).apps
    old_endpoint = old_apps.get_model("webhooks", "Endpoint")
    old_endpoint.objects.create(
        org_id=owner.org.pk, url="https://hooks.example.com/a", events=[], secret="whsec_before"
    )

    executor = MigrationExecutor(connection)
    executor.migrate([("webhooks", "0002_sealed_secrets")])
    [sealed] = _stored_secrets()
    opened = Endpoint.objects.get().secret
    executor = MigrationExecutor(connection)
    executor.migrate([("webhooks", "0001_initial")])
    [back] = _stored_secrets()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert sealed.startswith("sealed:") and "whsec_before" not in sealed
    assert opened == "whsec_before"
    assert back == "whsec_before"
