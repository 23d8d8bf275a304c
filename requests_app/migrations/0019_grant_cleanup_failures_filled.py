"""A grant's failed removal tries before ``Grant.cleanup_failures`` existed, read back from the
Logbook, where each failed try was a ``grant.remove_retry`` or ``grant.removal_stuck`` entry naming
its try (``attempt``): the highest one a grant's entries name. That is never fewer than the entries
the counter counted before, so the counter does not go down at the upgrade. The previous release's
workers, still running during a rolling deploy, do not add to the column: their failures then go
uncounted.

Not in one transaction (``atomic = False``): the Logbook is read with no lock on the grants, and
each grant's UPDATE commits on its own, so a large Logbook does not keep grants unreadable while it
is read (0018 added the column alone).
"""

from typing import Any

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Greatest

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
        # Never lower: the new release's workers may have counted tries since 0018.
        Grant.objects.filter(request_id=request_id, instance__instance_id=instance_id).update(
            cleanup_failures=Greatest(F("cleanup_failures"), Value(failures))
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("requests_app", "0018_grant_cleanup_failures"),
        ("audit", "0007_logbook_terminal_session_index"),
    ]

    operations = [
        # Going back leaves the column as it is; 0018's going back drops it.
        migrations.RunPython(count_logged_failures, migrations.RunPython.noop),
    ]
