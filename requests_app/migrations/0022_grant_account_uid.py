# A Linux grant keeps the uid of the account its create made or found (``Grant.account_uid``),
# which its removal finds the account by, whatever it was renamed to. A nullable column with no
# default: the release before keeps inserting grants without it during a rolling deploy (NULL, the
# removal then goes by the name and the host's records of the uids it gave). Going back (its last
# operation, the first undone) refuses while a grant that may still hold an account on its host
# has a uid: the release before would look for that account by its name alone, and call the grant
# removed should the account have been renamed.

from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError

# The grant states that may have left something on the instance (``GrantStatus.needs_cleanup``).
_NEEDING_CLEANUP = ("provisioning", "ready", "failed", "removing")


def _refuse_while_a_live_grant_has_a_uid(apps, schema_editor):
    Grant = apps.get_model("requests_app", "Grant")
    live = Grant.objects.filter(account_uid__isnull=False, status__in=_NEEDING_CLEANUP)
    if live.exists():
        raise IrreversibleError(
            f"requests_app 0022 cannot be reversed: {live.count()} Linux grant(s) not yet removed (the first "
            f"#{live.order_by('pk').values_list('pk', flat=True).first()}) have the uid of their account, which "
            "the release before cannot find a renamed account by. Wait until they are removed, or keep the "
            "requests_app app at 0022 or later."
        )


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0021_grant_account_sid'),
    ]

    operations = [
        migrations.AddField(
            model_name='grant',
            name='account_uid',
            field=models.PositiveIntegerField(blank=True, default=None, editable=False, null=True),
        ),
        migrations.RunPython(migrations.RunPython.noop, _refuse_while_a_live_grant_has_a_uid),
    ]
