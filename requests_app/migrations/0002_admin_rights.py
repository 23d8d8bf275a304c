# The request flag means administrator rights on both platforms (sudo on Linux,
# Administrators on Windows), so it is named for that; the data stays.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(model_name="accessrequest", old_name="sudo", new_name="admin_rights"),
        migrations.AlterField(
            model_name="accessrequest",
            name="admin_rights",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Linux: sudo; Windows: local Administrators, or the domain's admin group on a domain controller."
                ),
                verbose_name="Administrator rights",
            ),
        ),
    ]
