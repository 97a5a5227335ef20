from django.db import migrations


def seed(apps, schema_editor):
    from apps.orgs.platform import ensure_platform_groups

    ensure_platform_groups(apps.get_model("auth", "Group"))


class Migration(migrations.Migration):
    dependencies = [("orgs", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
