"""A Celery app configured the usual way. Celeriac never talks to its broker: the runner calls
the tasks' functions directly, and the client enqueues into PostgreSQL."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djapp.settings")
app = Celery("djapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
