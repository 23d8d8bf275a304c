"""A notification's receipt becomes a claim, then a send (requests_app.notifications.receipts):
``claimed_at`` and ``attempts`` for the claim, ``sent_at`` only once the mail server took the mail,
so a send that failed is tried again. The "ends soon" warning is keyed to the end it warned of
(``expires_at``), so a request extended after its warning is warned of its new end too.

Receipts from before were written as the send began, with no word of how it went: they count as
sent. Each earlier warning is taken to be about the request's end now (it cannot be known which
end it warned of), as before: no second warning for an end already warned of.

Going back (its last operation, the first undone), to what the older schema holds: a receipt there
is a mail sent, one per kind and request. A claim never sent is dropped (the older release sends
that mail then); of a request's "ends soon" warnings (one per end it was extended to) the latest
is kept.
"""

from typing import Any

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F, OuterRef, Subquery


def receipts_as_claims_sent(apps: Any, schema_editor: Any) -> None:
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    AccessRequest = apps.get_model("requests_app", "AccessRequest")
    Receipt.objects.update(claimed_at=F("sent_at"))
    Receipt.objects.filter(kind="expiring").update(
        expires_at=Subquery(AccessRequest.objects.filter(pk=OuterRef("request_id")).values("expires_at")[:1])
    )


def receipts_as_sent_once(apps: Any, schema_editor: Any) -> None:
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    unsent, _ = Receipt.objects.filter(sent_at__isnull=True).delete()
    latest = Receipt.objects.filter(kind=OuterRef("kind"), request_id=OuterRef("request_id")).order_by(
        "-sent_at", "-pk"
    )
    earlier, _ = Receipt.objects.exclude(pk=Subquery(latest.values("pk")[:1])).delete()
    if unsent or earlier:
        print(f"\n  Notification receipts dropped: {unsent} claimed but not sent, {earlier} earlier warning(s).")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0015_saml_name_id_key"),
        ("requests_app", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="notificationreceipt", name="notification_once_per_request"),
        migrations.AddField(
            model_name="notificationreceipt", name="attempts", field=models.PositiveSmallIntegerField(default=1)
        ),
        migrations.AddField(
            model_name="notificationreceipt",
            name="claimed_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="notificationreceipt", name="expires_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AlterField(
            model_name="notificationreceipt", name="sent_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunPython(receipts_as_claims_sent, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="notificationreceipt",
            index=models.Index(
                condition=models.Q(("sent_at__isnull", True)), fields=["claimed_at"], name="notification_unsent"
            ),
        ),
        migrations.AddConstraint(
            model_name="notificationreceipt",
            constraint=models.UniqueConstraint(
                condition=models.Q(("expires_at__isnull", True)),
                fields=("kind", "request_id"),
                name="notification_once_per_request",
            ),
        ),
        migrations.AddConstraint(
            model_name="notificationreceipt",
            constraint=models.UniqueConstraint(
                condition=models.Q(("expires_at__isnull", False)),
                fields=("kind", "request_id", "expires_at"),
                name="notification_once_per_request_end",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, receipts_as_sent_once),
    ]
