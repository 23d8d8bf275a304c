import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")

app = Celery("passport")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
