from decimal import Decimal

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requestlog", "0002_explained_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="cost",
            field=models.DecimalField(decimal_places=10, default=Decimal("0"), max_digits=20),
        ),
    ]
