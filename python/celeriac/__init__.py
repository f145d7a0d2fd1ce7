"""Celeriac for Python: the client, a Celery-shaped task decorator, and (in submodules) the
process-pool runner (``python -m celeriac.runner``) and a Django tasks backend
(``celeriac.django_tasks.CeleriacBackend``).

    import celeriac
    r = celeriac.enqueue("emails.send", ["a@example.com"], {"subject": "hi"}, countdown=30)
    celeriac.delay(send_email, "a@example.com")          # a Celery task, or any task object
    r.get(timeout=10)
"""

from .canvas import GroupResult, Signature, chain, chord, group, sig
from .client import (
    AsyncResult,
    apply_async,
    delay,
    enqueue,
    lock,
    schema,
    send_task,
    task_name,
)
from .exceptions import (
    LockNotAcquired,
    MaxRetriesExceededError,
    Retry,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskTerminated,
    TimeLimitExceeded,
    WorkerLostError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "GroupResult",
    "LockNotAcquired",
    "Signature",
    "chain",
    "chord",
    "group",
    "lock",
    "sig",
    "MaxRetriesExceededError",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskFailed",
    "TaskTerminated",
    "TimeLimitExceeded",
    "WorkerLostError",
    "apply_async",
    "delay",
    "enqueue",
    "schema",
    "send_task",
    "shared_task",
    "task",
    "task_name",
    "use_for_celery",
]

#: Tasks declared with :func:`task` in this process, by name (the runner looks here first).
registry = {}


class Task:
    """A function declared with :func:`task`: call it to run it here, ``.delay()`` /
    ``.apply_async()`` to enqueue it."""

    max_retries = 3
    default_retry_delay = 180
    autoretry_for = ()
    dont_autoretry_for = ()
    retry_kwargs = {}
    retry_backoff = False
    retry_backoff_max = 600
    retry_jitter = True
    acks_late = False
    reject_on_worker_lost = False
    time_limit = None
    soft_time_limit = None
    ignore_result = None
    queue = None

    def __init__(self, fun, name=None, bind=False, **options):
        self.run = fun
        self.bind = bind
        self.name = name or f"{fun.__module__}.{fun.__qualname__}"
        for k, v in options.items():
            setattr(self, k, v)
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun
        self.__module__ = fun.__module__
        self.__name__ = getattr(fun, "__name__", self.name)

    def __call__(self, *args, **kwargs):
        if self.bind:
            from .runner import BoundTask, Request

            return self.run(BoundTask(self, Request.local(self.name, args, kwargs)), *args, **kwargs)
        return self.run(*args, **kwargs)

    def delay(self, *args, **kwargs):
        return apply_async(self, args, kwargs)

    def apply_async(self, args=None, kwargs=None, **options):
        return apply_async(self, args, kwargs, **options)

    def s(self, *args, **kwargs):
        """A signature for workflows (``celeriac.chain``, ``group``, ``chord``)."""
        return Signature(self.name, args, kwargs)

    def si(self, *args, **kwargs):
        """An immutable signature (ignores the previous step's result)."""
        return Signature(self.name, args, kwargs, immutable=True)

    def signature(self, args=None, kwargs=None, **options):
        return Signature(self.name, args, kwargs, **options)

    def __repr__(self):
        return f"<celeriac task {self.name}>"


def task(*args, **options):
    """Declare a task, Celery-style: ``@task``, ``@task(bind=True, name=..., max_retries=...,
    autoretry_for=(...), time_limit=..., queue=...)``."""

    def decorate(fun):
        t = Task(fun, **options)
        registry[t.name] = t
        return t

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    if args:
        raise TypeError("use @task or @task(**options)")
    return decorate


shared_task = task


def use_for_celery():
    """Route Celery's ``Task.apply_async`` (and so ``.delay()``) to Celeriac, so existing call
    sites enqueue into Celeriac unchanged. Call once at startup (e.g. in ``AppConfig.ready``)."""
    from celery.app.task import Task as CeleryTask

    def _apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                     link_error=None, shadow=None, **options):
        return apply_async(self, args, kwargs, task_id=task_id, link=link,
                           link_error=link_error, shadow=shadow, **options)

    CeleryTask.apply_async = _apply_async
