"""Tasks declared with Django's own tasks framework (django.tasks, Django >= 6)."""
from django.tasks import task

from .models import Event


@task
def total(a, b):
    Event.objects.create(key="dj-total", data={"a": a, "b": b})
    return a + b


@task(takes_context=True)
def with_context(context, x):
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


@task
def fails():
    raise ValueError("django task failed")
