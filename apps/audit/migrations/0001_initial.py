# The audit log moved out of the orgs app. Its table (orgs_auditevent) and rows stay
# where they are: this migration only tells Django's state that the model is now ours,
# and orgs.0003 removes it from the orgs app's state. Neither touches the database.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("orgs", "0002_platform_groups"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("event_type", models.CharField(choices=[("org.created", "Org Created"), ("org.changed", "Org Changed"), ("org.deleted", "Org Deleted"), ("member.added", "Member Added"), ("member.removed", "Member Removed"), ("member.role_changed", "Member Role Changed"), ("org.ownership_transferred", "Ownership Transferred"), ("invitation.sent", "Invitation Sent"), ("invitation.accepted", "Invitation Accepted"), ("invitation.revoked", "Invitation Revoked"), ("key.created", "Key Created"), ("key.changed", "Key Changed"), ("key.rotated", "Key Rotated"), ("key.revealed", "Key Revealed"), ("key.revoked", "Key Revoked"), ("key.expired", "Key Expired"), ("plan.changed", "Plan Changed"), ("plan.edited", "Plan Edited"), ("worker.registered", "Worker Registered"), ("worker.changed", "Worker Changed"), ("worker.state_changed", "Worker State Changed"), ("worker.removed", "Worker Removed"), ("request.looked_up", "Request Looked Up")], max_length=40)),
                        ("target_type", models.CharField(blank=True, max_length=40)),
                        ("target_id", models.CharField(blank=True, max_length=64)),
                        ("data", models.JSONField(blank=True, default=dict)),
                        ("request_id", models.CharField(blank=True, max_length=200)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("org", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="audit_events", to="orgs.organisation")),
                    ],
                    options={
                        "db_table": "orgs_auditevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [models.Index(fields=["org", "-created_at"], name="audit_org_time"), models.Index(fields=["org", "event_type", "-created_at"], name="audit_org_type_time")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
