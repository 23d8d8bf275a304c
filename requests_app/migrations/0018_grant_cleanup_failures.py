"""Each grant counts its failed removal tries (``Grant.cleanup_failures``), for the counter of
failed removal Run Commands: the Logbook no longer hears of every one.

A grant's failures before this column are read back from the Logbook, where each failed try was
a ``grant.remove_retry`` or ``grant.removal_stuck`` entry naming its try (``attempt``): the
highest one a grant's entries name. That is never fewer than the entries the counter counted
before, so the counter does not go down at the upgrade. The previous release's workers, still
running during a rolling deploy, do not add to the column: their failures then go uncounted.
"""

from typing import Any

from django.db import migrations, models

REMOVAL_FAILED_ACTIONS = ("grant.remove_retry", "grant.removal_stuck")


def count_logged_failures(apps: Any, schema_editor: Any) -> None:
    LogbookEntry = apps.get_model("audit", "LogbookEntry")
    Grant = apps.get_model("requests_app", "Grant")
    highest: dict[tuple[int, str], int] = {}
    entries = LogbookEntry.objects.filter(action__in=REMOVAL_FAILED_ACTIONS, request_id__isnull=False)
    for request_id, instance_ids, detail in entries.values_list("request_id", "instance_ids", "detail").iterator():
        attempt = detail.get("attempt") if isinstance(detail, dict) else None
        instances = instance_ids.split()
        if not isinstance(attempt, int) or len(instances) != 1:  # a grant's entry names its one instance
            continue
        key = (request_id, instances[0])
        highest[key] = max(highest.get(key, 0), attempt)
    for (request_id, instance_id), failures in highest.items():
        Grant.objects.filter(request_id=request_id, instance__instance_id=instance_id).update(
            cleanup_failures=failures
        )


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0017_request_newest_index"),
        ("audit", "0007_logbook_terminal_session_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="cleanup_failures",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
        # Going back drops the column, and what it counted with it.
        migrations.RunPython(count_logged_failures, migrations.RunPython.noop),
    ]
