from django.db import migrations


def seed(apps, schema_editor):
    from apps.plans.catalogue import ensure_catalogue

    ensure_catalogue(apps.get_model("plans", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
