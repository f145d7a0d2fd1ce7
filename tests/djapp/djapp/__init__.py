# As in a typical Celery + Django project: the Celery app is loaded with the project.
from .celery import app as celery_app

__all__ = ["celery_app"]
