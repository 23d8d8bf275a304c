"""Passport settings, driven by the environment: ``DJANGO_SETTINGS_MODULE=passport_portal.settings``.

With nothing set, the portal runs on embedded defaults for the demo: SQLite, an
in-process Celery broker and channel layer, and devcloud for AWS. ``DATABASE_URL``,
``REDIS_URL`` and the AWS variables switch on the real parts. With
``PASSPORT_ENV=production`` every secret must be given; nothing falls back.

One module per concern, each reading its part of the environment through the strict helpers
of ``passport_portal.env``. They are imported here in the order they were once written in one
file: a later part reads names an earlier one set (``PRODUCTION``, ``STORAGES``, beat's
schedule, which later parts add to), and a start with several mistakes names the same first one.
"""

# isort: off
from passport_portal.settings.environment import *  # noqa: F403
from passport_portal.settings.application import *  # noqa: F403
from passport_portal.settings.database import *  # noqa: F403
from passport_portal.settings.auth import *  # noqa: F403
from passport_portal.settings.storage import *  # noqa: F403
from passport_portal.settings.broker import *  # noqa: F403
from passport_portal.settings.terminal import *  # noqa: F403
from passport_portal.settings.health import *  # noqa: F403
from passport_portal.settings.portal import *  # noqa: F403
from passport_portal.settings.logbook import *  # noqa: F403
from passport_portal.settings.api import *  # noqa: F403
from passport_portal.settings.security import *  # noqa: F403
from passport_portal.settings.mail import *  # noqa: F403
from passport_portal.settings.logs import *  # noqa: F403
# isort: on
