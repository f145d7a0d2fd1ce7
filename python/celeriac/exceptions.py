"""Exceptions shared by the runner and the client.

When Celery is importable, ``SoftTimeLimitExceeded``, ``TimeLimitExceeded``, ``Retry`` and
friends *are* Celery's classes, so ``except SoftTimeLimitExceeded`` in an existing Celery task
module catches what the runner raises.
"""

import builtins

try:  # pragma: no cover - depends on the environment
    from celery import exceptions as _celery
except Exception:  # noqa: BLE001 - celery missing or broken: use our own classes
    _celery = None


class CeleriacError(Exception):
    """Base class of Celeriac's own errors."""


if _celery is not None:
    SoftTimeLimitExceeded = _celery.SoftTimeLimitExceeded
    TimeLimitExceeded = _celery.TimeLimitExceeded
    WorkerLostError = _celery.WorkerLostError
    TaskRevokedError = _celery.TaskRevokedError
    MaxRetriesExceededError = _celery.MaxRetriesExceededError
    NotRegistered = _celery.NotRegistered
    _CeleryRetry = _celery.Retry
else:

    class SoftTimeLimitExceeded(CeleriacError):
        """The task's soft time limit passed; catch it to clean up and return."""

    class TimeLimitExceeded(CeleriacError):
        """The task was killed at its hard time limit."""

    class WorkerLostError(CeleriacError):
        """The process running the task died."""

    class TaskRevokedError(CeleriacError):
        """The task was revoked."""

    class MaxRetriesExceededError(CeleriacError):
        """The task used up its retries."""

    class NotRegistered(CeleriacError):
        """No task of that name."""

    _CeleryRetry = None


class Retry(Exception):
    """Raised by ``self.retry(...)``: run the task again after ``countdown`` seconds.

    ``exc`` is the cause (recorded, and the final error once retries are used up);
    ``max_retries`` overrides the retry budget for this decision.
    """

    def __init__(self, message=None, exc=None, countdown=None, eta=None, max_retries=None):
        super().__init__(message or "Retry requested")
        self.exc = exc
        self.countdown = countdown
        self.eta = eta
        self.max_retries = max_retries


class TaskTerminated(BaseException):
    """Raised inside a running task when it is revoked with terminate, or the worker stops.

    A BaseException, so ``except Exception`` in task code does not swallow it.
    """


class TaskFailed(CeleriacError):
    """A task ended FAILURE (or REVOKED) with an error whose class is not importable here."""

    def __init__(self, type_name, message, traceback=None):
        super().__init__(f"{type_name}: {message}")
        self.type = type_name
        self.message = message
        self.traceback = traceback


class LockNotAcquired(CeleriacError):
    """``with celeriac.lock(...)`` could not take the lock within its ``wait``."""


class TimeoutError(builtins.TimeoutError, CeleriacError):  # noqa: A001 - Celery's name
    """``AsyncResult.get`` gave up waiting."""


_OWN = {
    "SoftTimeLimitExceeded": SoftTimeLimitExceeded,
    "TimeLimitExceeded": TimeLimitExceeded,
    "WorkerLostError": WorkerLostError,
    "TaskRevokedError": TaskRevokedError,
    "MaxRetriesExceededError": MaxRetriesExceededError,
    "NotRegistered": NotRegistered,
}


def type_name(exc):
    """The name stored for an exception: bare for builtins and Celery/Celeriac's own
    exceptions (matching the names the worker itself uses), ``module.QualName`` otherwise."""
    cls = type(exc)
    module = cls.__module__ or ""
    if module == "builtins" or module.startswith(("celery.", "celeriac.")) or module in ("celery", "celeriac"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def class_path(name):
    """An importable dotted path for a stored error type (for Django's TaskError)."""
    if "." in name:
        return name
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return f"builtins.{name}"
    if name in _OWN or name in ("Retry", "TaskTerminated", "TaskFailed"):
        return f"celeriac.exceptions.{name}"
    return "celeriac.exceptions.TaskFailed"


def rebuild(error):
    """An exception instance for a stored error ``{"type", "message", "traceback"}``."""
    error = error or {}
    name = error.get("type") or "TaskFailed"
    message = error.get("message") or ""
    cls = _OWN.get(name)
    if cls is None and "." not in name:
        candidate = getattr(builtins, name, None)
        if isinstance(candidate, type) and issubclass(candidate, Exception):
            cls = candidate
    if cls is not None:
        try:
            exc = cls(message)
            exc.traceback = error.get("traceback")
            return exc
        except Exception:  # noqa: BLE001 - odd constructor: fall back
            pass
    return TaskFailed(name, message, error.get("traceback"))


# Names re-exported for a Celery-shaped import path (celeriac.exceptions.X).
Terminated = TaskTerminated
