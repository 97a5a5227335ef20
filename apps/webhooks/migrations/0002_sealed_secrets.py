"""Signing secrets sealed at rest (pendra_console.sealing): the column widened, each stored secret sealed.

The rows are read and written with plain SQL: the field itself would try to open the
values that are not sealed yet.
"""

from django.db import migrations

import pendra_console.sealing


def _rewrite(apps, schema_editor, change):
    Endpoint = apps.get_model("webhooks", "Endpoint")
    connection = schema_editor.connection
    table, column = connection.ops.quote_name(Endpoint._meta.db_table), connection.ops.quote_name("secret")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {column} FROM {table}")
        rows = cursor.fetchall()
        for pk, stored in rows:
            new = change(stored)
            if new != stored:
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [new, pk])


def seal_stored(apps, schema_editor):
    _rewrite(
        apps,
        schema_editor,
        lambda stored: stored if stored.startswith(pendra_console.sealing.PREFIX) else pendra_console.sealing.seal(stored),
    )


def unseal_stored(apps, schema_editor):
    _rewrite(
        apps,
        schema_editor,
        lambda stored: pendra_console.sealing.unseal(stored)
        if stored.startswith(pendra_console.sealing.PREFIX)
        else stored,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="endpoint",
            name="secret",
            field=pendra_console.sealing.SealedTextField(),
        ),
        migrations.RunPython(seal_stored, unseal_stored, elidable=False),
    ]
