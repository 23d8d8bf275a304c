# A grant counts the scripts that recorded what they wrote of its expiries on its host
# (``Grant.host_writes``), so a move that lands before a key refresh rendered earlier is not kept as
# in step. With a database default: the release before keeps inserting grants without it during a
# rolling deploy.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0026_os_username'),
    ]

    operations = [
        migrations.AddField(
            model_name='grant',
            name='host_writes',
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
    ]
