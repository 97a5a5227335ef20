"""Indexes that every written record paid for and no query reads (bench/writer_bench.py).

- the org's own index on both record tables: the org leads the composite indexes
  (``record_org_time_id``, ``record_org_user_time``, ``usage_org_time``), which serve
  every query by org;
- the ``varchar_pattern_ops`` copies PostgreSQL gets for an indexed text column, for
  ``LIKE 'prefix%'``: the uids and request ids are only ever looked up whole, which
  their plain (unique) indexes serve.
"""

import django.db.models.deletion
from django.db import migrations, models

# Django's names for them (deterministic: a hash of the table and column names).
_PATTERN_INDEXES = {
    "requestlog_requestrecord_uid_7f90c9e4_like": ("requestlog_requestrecord", "uid"),
    "requestlog_requestrecord_request_id_e3cce247_like": ("requestlog_requestrecord", "request_id"),
    "requestlog_usagerecord_request_uid_44364354_like": ("requestlog_usagerecord", "request_uid"),
}


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # only PostgreSQL makes them
    for name in _PATTERN_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def create_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for name, (table, column) in _PATTERN_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({quote(column)} varchar_pattern_ops)"
        )


_ORG = models.ForeignKey(
    blank=True,
    db_constraint=False,
    db_index=False,
    null=True,
    on_delete=django.db.models.deletion.DO_NOTHING,
    related_name="+",
    to="orgs.organisation",
)


class Migration(migrations.Migration):
    dependencies = [
        ("orgs", "0003_auditevent_moved_to_audit"),
        ("requestlog", "0005_request_log_indexes"),
    ]

    operations = [
        migrations.AlterField(model_name="requestrecord", name="org", field=_ORG),
        migrations.AlterField(model_name="usagerecord", name="org", field=_ORG.clone()),
        migrations.RunPython(drop_pattern_indexes, create_pattern_indexes),
    ]
