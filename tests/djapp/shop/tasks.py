"""An ordinary Celery task module (autodiscovered by the Celery app), left as it would be in a
Celery project."""
from celery import shared_task

from djapp.celery import app

from .models import Event


@shared_task
def add(x, y):
    return x + y


@shared_task(bind=True, max_retries=2, default_retry_delay=0)
def flaky(self, key):
    Event.objects.create(key=key, data={"retries": self.request.retries, "id": self.request.id})
    self.update_state(state="PROGRESS", meta={"retries": self.request.retries})
    if self.request.retries < 2:
        raise self.retry(exc=ValueError("not yet"), countdown=0)
    return {"retries": self.request.retries, "args": self.request.args, "name": self.name}


@app.task(name="shop.renamed")
def renamed(x):
    return f"renamed:{x}"


@shared_task(autoretry_for=(KeyError,), retry_kwargs={"max_retries": 1, "countdown": 0})
def always_key_error(key):
    Event.objects.create(key=key)
    raise KeyError("boom")
