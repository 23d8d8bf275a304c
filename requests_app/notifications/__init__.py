"""Email notifications about access requests, through Django's email backend.

Services call ``notification_enqueue`` inside their transaction; the mail is handed to a
Celery task only after commit, so a rolled-back change sends nothing and a slow mail server
never holds up a request. Sending claims a ``NotificationReceipt`` first, so a notification
goes out at most once per request, kind and event (a request asked again after it went back to
pending, each extension; and, for "ends soon", per end time) even when the task runs twice;
with the broker down it is sent from the process that made the change (``notification_dispatch``).
The receipt counts as sent only once the mail server took the mail: one that was not (the server
down, the sender killed) is claimed again later, by a redelivery or by the sweep
(``requests_due_for_notice``). Failures are logged, never raised: a lost email must not undo or
block access.

``messages``: what each mail says and to whom; ``receipts``: the claim and the send;
``delivery``: queueing, sending and the sweep's list.
"""

from requests_app.notifications.delivery import (
    notification_dispatch,
    notification_enqueue,
    notification_send,
    requests_due_for_notice,
    site_admins_alert,
)
from requests_app.notifications.messages import KINDS, Kind

__all__ = [
    "KINDS",
    "Kind",
    "notification_dispatch",
    "notification_enqueue",
    "notification_send",
    "requests_due_for_notice",
    "site_admins_alert",
]
