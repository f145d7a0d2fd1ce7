"""A backend for Django's tasks framework (``django.tasks``, Django ≥ 6.0).

    TASKS = {
        "default": {
            "BACKEND": "celeriac.django_tasks.CeleriacBackend",
            "QUEUES": [],                       # any queue name (default: only "default")
            "OPTIONS": {"DATABASE": "default"},  # Django database alias used to enqueue
        }
    }

``my_task.enqueue(...)`` inserts the task into Celeriac through Django's connection (so it joins
``transaction.atomic()``); ``celeriac worker --pool process --exec 'python -m celeriac.runner
--django mysite.settings' -Q default`` runs it; ``my_task.get_result(id)`` and
``result.refresh()`` read the row back. Django priorities (-100…100) map to Celeriac's 0…200;
the queue name is used as is.
"""

import json

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json
from django.utils import timezone
from django.utils.module_loading import import_string

from . import client, exceptions

_STATUS = {
    "SCHEDULED": TaskResultStatus.READY,
    "PENDING": TaskResultStatus.READY,
    "RETRY": TaskResultStatus.READY,
    "STARTED": TaskResultStatus.RUNNING,
    "SUCCESS": TaskResultStatus.SUCCESSFUL,
    "FAILURE": TaskResultStatus.FAILED,
    "REVOKED": TaskResultStatus.FAILED,
}


class CeleriacBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.database = self.options.get("DATABASE", "default")

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        args = normalize_json(list(args))
        kwargs = normalize_json(dict(kwargs))
        r = client.enqueue(
            task.module_path,
            args,
            kwargs,
            queue=task.queue_name,
            priority=int(task.priority) + 100,
            eta=task.run_after,
            headers={"django_task_backend": self.alias},
            using=self.database,
        )
        result = TaskResult(
            task=task,
            id=r.id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id):
        sql = (
            "SELECT name, state, args::text, kwargs::text, result::text, error::text, created_at, started_at, "
            "finished_at, attempt, worker_id "
            f'FROM "{client.schema()}".task_states WHERE id = %s::uuid'
        )
        try:
            with client._Cursor(self.database) as cur:
                cur.execute(sql, [str(result_id)])
                row = cur.fetchone()
        except Exception as e:  # a malformed id, for one
            if "uuid" in str(e).lower():
                raise TaskResultDoesNotExist(result_id) from None
            raise
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        name, state, args, kwargs, value, error, created, started, finished, attempt, worker = row
        # jsonb comes as text (decoded here whatever the driver does with jsonb).
        args, kwargs, value, error = (json.loads(v) if v is not None else None for v in (args, kwargs, value, error))
        try:
            task = import_string(name)
        except ImportError:
            raise TaskResultDoesNotExist(result_id) from None
        status = _STATUS.get(state, TaskResultStatus.READY)
        errors = []
        if status == TaskResultStatus.FAILED:
            error = error or {"type": "TaskRevokedError", "message": "revoked"}
            errors.append(
                TaskError(
                    exception_class_path=exceptions.class_path(error.get("type") or "TaskFailed"),
                    traceback=error.get("traceback") or f"{error.get('type')}: {error.get('message')}",
                )
            )
        worker_id = str(worker) if worker else "celeriac"
        result = TaskResult(
            task=task,
            id=str(result_id),
            status=status,
            enqueued_at=created,
            started_at=started,
            finished_at=finished if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED) else None,
            last_attempted_at=started,
            args=args if args is not None else [],
            kwargs=kwargs if kwargs is not None else {},
            backend=self.alias,
            errors=errors,
            worker_ids=[worker_id] * max(int(attempt or 0), 0),
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", value)
        return result
