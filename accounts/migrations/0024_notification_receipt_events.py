"""A notification receipt per event, not only per kind and request: a request back to pending is
asked (and its requester told) again, approved again, extended more than once, each event being
the Logbook entry that marks it (``requests_app.notifications.messages.event_of``). 0 for the
first, in the database too, for the release before this one during a rolling deploy.

Going back, the older schema holds one receipt per kind and request: the latest event's is kept
(so the older release sends nothing again), as 0016 keeps the latest "ends soon" warning."""

from typing import Any

from django.db import migrations, models


def receipts_one_per_request(apps: Any, schema_editor: Any) -> None:
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    later = Receipt.objects.filter(
        expires_at__isnull=True,
        kind=models.OuterRef("kind"),
        request_id=models.OuterRef("request_id"),
        event_id__gt=models.OuterRef("event_id"),
    )
    Receipt.objects.filter(models.Exists(later), expires_at__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0023_user_manager_trailed"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="notificationreceipt",
            name="notification_once_per_request",
        ),
        migrations.AddField(
            model_name="notificationreceipt",
            name="event_id",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddConstraint(
            model_name="notificationreceipt",
            constraint=models.UniqueConstraint(
                condition=models.Q(("expires_at__isnull", True)),
                fields=("kind", "request_id", "event_id"),
                name="notification_once_per_event",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, receipts_one_per_request),
    ]
