# The audit log is the audit app's now (audit.0001); the table and its rows stay.
# State only: the database is not touched.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orgs", "0002_platform_groups"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
    ]
