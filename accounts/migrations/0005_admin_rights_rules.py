# deny_sudo becomes deny_admin_rights (same data), and automatic approval learns to leave
# requests for administrator rights to an approver unless the policy says otherwise. Existing
# policies start with that off too: an automatic yes to administrator rights is something an
# account's owner turns on knowingly, not something an upgrade turns on for them.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_saml_and_membership_source"),
    ]

    operations = [
        migrations.RenameField(model_name="approvalpolicy", old_name="deny_sudo", new_name="deny_admin_rights"),
        migrations.AlterField(
            model_name="approvalpolicy",
            name="deny_admin_rights",
            field=models.BooleanField(
                default=False,
                help_text="Refuse requests for administrator rights (sudo on Linux, Administrators on Windows).",
                verbose_name="Deny administrator rights",
            ),
        ),
        migrations.AddField(
            model_name="approvalpolicy",
            name="auto_approve_admin_rights",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Also approve requests for administrator rights automatically; otherwise an approver decides them."
                ),
                verbose_name="Auto-approve administrator rights",
            ),
        ),
    ]
