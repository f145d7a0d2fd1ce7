"""The child of ``celeriac worker --pool process``: runs tasks one at a time, speaking the
JSON-lines protocol on stdin/stdout (see the README, "The child protocol").

    python -m celeriac.runner [--django mysite.settings] [-I myapp.tasks ...] [--path DIR]

Tasks are found by name: first among tasks declared with ``celeriac.task``, Celery's registry
(when Celery is loaded) and, with Django, the ``tasks`` module of every installed app; then by
dotted path (``myapp.tasks.send_email`` imports ``myapp.tasks`` and takes ``send_email``).
Plain functions are called as they are; Celery tasks (``@shared_task``, ``@app.task``, class
based) have their underlying ``run`` called, with a ``self`` that has ``request``,
``update_state`` and ``retry`` when they are bound; ``django.tasks`` tasks are called with
their context when they take one.

The protocol keeps its own copies of the original stdin/stdout file descriptors; fd 0 is then
/dev/null and fd 1 is the process's stderr, so ``print()`` (or a C library writing to stdout)
in task code cannot corrupt the protocol.
"""

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback

from . import exceptions
from .client import _json_default

PROTOCOL_VERSION = 1


class Channel:
    """The protocol channel: private copies of fd 0 and fd 1."""

    def __init__(self):
        out_fd = os.dup(1)
        in_fd = os.dup(0)
        os.dup2(2, 1)  # stdout noise goes to stderr from now on
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self._out = os.fdopen(out_fd, "wb")
        self._in = os.fdopen(in_fd, "rb")
        self._lock = threading.Lock()

    def send(self, msg):
        data = (json.dumps(msg, default=_json_default) + "\n").encode()
        with _critical():
            with self._lock:
                self._out.write(data)
                self._out.flush()

    def receive(self):
        """The next message, or None at end of input (the worker wants us gone)."""
        while True:
            line = self._in.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                return json.loads(line)
            except ValueError:
                sys.stderr.write(f"celeriac.runner: ignoring a bad protocol line: {line[:200]!r}\n")


# ─── signals: soft time limit and termination ─────────────────────────────────────────────────
#
# The worker sends SIGUSR1 at the soft time limit and SIGUSR2 to terminate. The exception is
# raised inside task code only; while the runner itself is busy (writing a protocol line,
# preparing or reporting a task) it is kept pending and raised when task code resumes, so a
# protocol line is never cut in half.


class _State:
    running = None  # the Request being run
    in_task = False  # main thread is inside task code
    critical = 0  # main thread is inside runner code that must not be interrupted
    pending = None  # an exception to raise once task code resumes


_state = _State()


class _critical:
    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            _state.critical += 1

    def __exit__(self, *exc):
        if threading.current_thread() is threading.main_thread():
            _state.critical -= 1
            if _state.critical == 0 and _state.in_task and _state.pending is not None and exc[0] is None:
                pending, _state.pending = _state.pending, None
                raise pending
        return False


def _on_signal(signum, frame):
    if _state.running is None:
        return  # between tasks: nothing to interrupt
    if signum == signal.SIGUSR1:
        exc = exceptions.SoftTimeLimitExceeded(f"soft time limit exceeded ({_state.running.task})")
    else:
        exc = exceptions.TaskTerminated("task terminated by the worker")
    if _state.in_task and _state.critical == 0:
        raise exc
    _state.pending = exc


class _in_task:
    """Marks the main thread as running task code."""

    def __enter__(self):
        _state.in_task = True
        if _state.pending is not None:
            pending, _state.pending = _state.pending, None
            raise pending

    def __exit__(self, *exc):
        _state.in_task = False
        return False


# ─── what task code sees ──────────────────────────────────────────────────────────────────────


class Request:
    """Celery's ``self.request``: id, task, args, kwargs, retries, …"""

    def __init__(self, msg):
        self.id = msg.get("id")
        self.task = msg.get("task")
        self.args = list(msg.get("args") or [])
        self.kwargs = dict(msg.get("kwargs") or {})
        self.retries = int(msg.get("retries") or 0)
        self.attempt = int(msg.get("attempt") or 1)
        self.headers = dict(msg.get("headers") or {})
        self.eta = msg.get("eta")
        self.expires = None
        self.queue = msg.get("queue")
        self.delivery_info = {"routing_key": self.queue, "exchange": "", "priority": None}
        self.periodic_task_name = msg.get("periodic_task_name")
        self.timelimit = (msg.get("time_limit"), msg.get("soft_time_limit"))
        self.max_retries = msg.get("max_retries")
        self.created_at = msg.get("created_at")
        self.hostname = os.uname().nodename
        self.is_eager = False
        self.called_directly = False
        self.correlation_id = self.id
        self.root_id = self.id
        self.parent_id = None
        self.group = None
        self.chord = None
        self.callbacks = None
        self.errbacks = None
        self.reply_to = None

    @classmethod
    def local(cls, name, args, kwargs):
        """The request of a task called directly (not through the queue)."""
        r = cls({"task": name, "args": list(args), "kwargs": dict(kwargs)})
        r.called_directly = True
        return r

    def get(self, key, default=None):
        return getattr(self, key, default)


class BoundTask:
    """The ``self`` of a bound task: ``request``, ``update_state``, ``retry``; any other
    attribute comes from the task object itself."""

    def __init__(self, task, request, channel=None):
        self._task = task
        self._channel = channel
        self.request = request

    def __getattr__(self, name):
        return getattr(self._task, name)

    @property
    def name(self):
        return getattr(self._task, "name", None) or self.request.task

    def update_state(self, task_id=None, state=None, meta=None, **_ignored):
        if self._channel is None:
            return
        self._channel.send(
            {"type": "progress", "id": task_id or self.request.id, "state": state or "PROGRESS", "meta": meta}
        )

    def retry(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None,
              max_retries=None, **_options):
        if countdown is None and eta is None:
            countdown = getattr(self._task, "default_retry_delay", None)
        if max_retries is None:
            max_retries = getattr(self._task, "max_retries", 3)
        raise exceptions.Retry(exc=exc, countdown=countdown, eta=eta,
                               max_retries=_budget(max_retries))

    def subtask(self, *a, **k):  # pragma: no cover
        raise NotImplementedError("celeriac: canvas is not supported")

    signature = s = si = subtask


def _budget(max_retries):
    """Celery's None means "retry forever"."""
    if max_retries is None:
        return 2**31 - 1
    return max(int(max_retries), 0)


# ─── finding and calling tasks ────────────────────────────────────────────────────────────────


class Target:
    """A resolved task: how to call it."""

    def __init__(self, obj, kind):
        self.obj = obj
        self.kind = kind  # "function", "celery", "celeriac", "django"

    @property
    def options(self):
        return self.obj if self.kind in ("celery", "celeriac") else None

    def retry_on_worker_lost(self):
        o = self.options
        return bool(o is not None and getattr(o, "acks_late", False) and getattr(o, "reject_on_worker_lost", False))

    def call(self, request, channel):
        args, kwargs = request.args, request.kwargs
        if self.kind == "function":
            return self.obj(*args, **kwargs)
        if self.kind == "celeriac":
            if self.obj.bind:
                return self.obj.run(BoundTask(self.obj, request, channel), *args, **kwargs)
            return self.obj.run(*args, **kwargs)
        if self.kind == "celery":
            run = None
            for klass in type(self.obj).__mro__:
                if "run" in klass.__dict__:
                    run = klass.__dict__["run"]
                    break
            if isinstance(run, staticmethod):
                return run.__func__(*args, **kwargs)
            if run is None:
                raise exceptions.NotRegistered(f"{request.task}: Celery task without a run method")
            return run(BoundTask(self.obj, request, channel), *args, **kwargs)
        if self.kind == "django":
            return _call_django_task(self.obj, request)
        raise TypeError(self.kind)


def _classify(obj):
    if obj is None:
        return None
    get = getattr(obj, "_get_current_object", None)  # celery.local.Proxy (shared_task)
    if get is not None and "celery" in sys.modules:
        try:
            obj = get()
        except Exception:  # noqa: BLE001
            return None
    from . import Task as CeleriacTask

    if isinstance(obj, CeleriacTask):
        return Target(obj, "celeriac")
    if "celery" in sys.modules:
        from celery.app.task import Task as CeleryTask

        if isinstance(obj, CeleryTask):
            return Target(obj, "celery")
    if "django.tasks" in sys.modules:
        from django.tasks import Task as DjangoTask

        if isinstance(obj, DjangoTask):
            return Target(obj, "django")
    if callable(obj):
        return Target(obj, "function")
    return None


class Resolver:
    def __init__(self):
        self.cache = {}

    def resolve(self, name):
        if name in self.cache:
            return self.cache[name]
        target = self._registered(name) or self._dotted(name)
        if target is None:
            raise exceptions.NotRegistered(
                f"task {name!r} is not registered in this child (no such declared task and no importable dotted path)"
            )
        self.cache[name] = target
        return target

    def _registered(self, name):
        from . import registry

        if name in registry:
            return Target(registry[name], "celeriac")
        if "celery" in sys.modules:
            try:
                from celery import current_app

                t = current_app.tasks.get(name)
            except Exception:  # noqa: BLE001
                t = None
            if t is not None:
                return _classify(t)
        return None

    def _dotted(self, name):
        module_name, _, attr = name.rpartition(".")
        if not module_name:
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                return None  # no such module: not a dotted path
            raise
        obj = module
        for part in attr.split("."):  # Class.method qualnames
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return _classify(obj)


def _call_django_task(task, request):
    from django.tasks.base import TaskContext, TaskResult, TaskResultStatus
    from django.utils import timezone

    if task.takes_context:
        now = timezone.now()
        result = TaskResult(
            task=task,
            id=request.id,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=request.args,
            kwargs=request.kwargs,
            backend=task.backend,
            errors=[],
            worker_ids=[f"celeriac-{os.getpid()}"] * max(request.attempt, 1),
        )
        return task.call(TaskContext(task_result=result), *request.args, **request.kwargs)
    return task.call(*request.args, **request.kwargs)


def _autoretry(target, request, exc):
    """Celery's ``autoretry_for``: a Retry for ``exc``, or None."""
    o = target.options
    if o is None:
        return None
    on = tuple(getattr(o, "autoretry_for", ()) or ())
    if not on or not isinstance(exc, on):
        return None
    dont = tuple(getattr(o, "dont_autoretry_for", ()) or ())
    if dont and isinstance(exc, dont):
        return None
    kw = dict(getattr(o, "retry_kwargs", None) or {})
    countdown = kw.get("countdown")
    backoff = getattr(o, "retry_backoff", False)
    if backoff:
        factor = 1 if backoff is True else int(backoff)
        maximum = getattr(o, "retry_backoff_max", 600)
        countdown = min(maximum, factor * (2 ** request.retries))
        if getattr(o, "retry_jitter", True):
            import random

            countdown = random.randrange(int(countdown) + 1)
    if countdown is None:
        countdown = getattr(o, "default_retry_delay", None)
    return exceptions.Retry(exc=exc, countdown=countdown, max_retries=_budget(kw.get("max_retries", getattr(o, "max_retries", 3))))


def error_info(exc):
    return {
        "type": exceptions.type_name(exc),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def _retry_message(task_id, r):
    countdown = r.countdown
    if countdown is None and r.eta is not None:
        try:
            import datetime as dt

            eta = r.eta if isinstance(r.eta, dt.datetime) else dt.datetime.fromisoformat(str(r.eta))
            if eta.tzinfo is None:
                eta = eta.replace(tzinfo=dt.timezone.utc)
            countdown = max((eta - dt.datetime.now(dt.timezone.utc)).total_seconds(), 0.0)
        except Exception:  # noqa: BLE001
            countdown = None
    msg = {"type": "result", "id": task_id, "status": "retry"}
    if countdown is not None:
        msg["countdown"] = float(countdown)
    if r.max_retries is not None:
        msg["max_retries"] = int(r.max_retries)
    if r.exc is not None:
        msg["error"] = error_info(r.exc)
    return msg


def _as_retry(exc):
    """Our Retry, or Celery's (raised by code that calls celery's own retry machinery)."""
    if isinstance(exc, exceptions.Retry):
        return exc
    celery_retry = exceptions._CeleryRetry
    if celery_retry is not None and isinstance(exc, celery_retry):
        when = getattr(exc, "when", None)
        countdown = when if isinstance(when, (int, float)) else None
        return exceptions.Retry(exc=getattr(exc, "exc", None), countdown=countdown)
    return None


class _TaskLogHandler(logging.Handler):
    """Sends log records emitted while a task runs to the worker (with the task id)."""

    def __init__(self, channel):
        super().__init__()
        self.channel = channel
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        req = _state.running
        if req is None or record.name.startswith("celeriac.runner"):
            return
        try:
            message = self.format(record)
            level = record.levelname.lower()
            self.channel.send({"type": "log", "id": req.id, "level": level, "logger": record.name, "message": message})
        except exceptions.TaskTerminated:
            raise
        except exceptions.SoftTimeLimitExceeded:
            raise
        except Exception:  # noqa: BLE001
            self.handleError(record)


def _django_hygiene():
    """Like Celery's Django fixup: drop broken/expired DB connections around each task."""
    if "django" not in sys.modules:
        return
    try:
        from django.db import close_old_connections, reset_queries

        reset_queries()
        close_old_connections()
    except Exception:  # noqa: BLE001
        pass


def run_one(msg, channel, resolver):
    task_id = msg.get("id")
    request = Request(msg)
    try:
        with _critical():
            target = resolver.resolve(request.task)
    except exceptions.NotRegistered as e:
        channel.send({"type": "result", "id": task_id, "status": "failure",
                      "error": {"type": "NotRegistered", "message": str(e.args[0] if e.args else e), "traceback": None}})
        return
    except BaseException as e:  # noqa: BLE001 - an import error in the task module
        channel.send({"type": "result", "id": task_id, "status": "failure", "error": error_info(e)})
        return
    channel.send({"type": "started", "id": task_id, "retry_on_worker_lost": target.retry_on_worker_lost()})
    _django_hygiene()
    _state.pending = None
    _state.running = request
    try:
        with _in_task():
            value = target.call(request, channel)
    except BaseException as e:  # noqa: BLE001 - everything a task raises is its outcome
        retry = _as_retry(e) or _autoretry(target, request, e)
        if retry is not None:
            outcome = _retry_message(task_id, retry)
        else:
            outcome = {"type": "result", "id": task_id, "status": "failure", "error": error_info(e)}
    else:
        try:
            json.dumps(value, default=_json_default)  # fail here, not in send
            outcome = {"type": "result", "id": task_id, "status": "success", "result": value}
        except (TypeError, ValueError) as e:
            outcome = {"type": "result", "id": task_id, "status": "failure",
                       "error": {"type": "EncodeError", "message": f"the result is not JSON: {e}", "traceback": None}}
    finally:
        _state.running = None
        _state.pending = None
    _django_hygiene()
    channel.send(outcome)


def _watch_parent():
    """Exit when the worker is gone (we were re-parented), even in the middle of a task."""
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(70)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m celeriac.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--django", metavar="SETTINGS", help="Django settings module (django.setup() before tasks run)")
    p.add_argument("-I", "--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import this module at start (repeatable)")
    p.add_argument("--path", action="append", default=[], metavar="DIR", help="prepend DIR to sys.path (repeatable)")
    p.add_argument("--no-autodiscover", action="store_true", help="with Django: do not import every app's tasks module")
    p.add_argument("--loglevel", default="INFO", help="root logger level (default INFO)")
    args = p.parse_args(argv)

    channel = Channel()  # first: whatever imports print goes to stderr
    for d in reversed(args.path):
        sys.path.insert(0, os.path.abspath(d))
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.loglevel.upper(), logging.INFO),
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(getattr(logging, args.loglevel.upper(), logging.INFO))
    for handler in logging.getLogger().handlers:  # task records go over the protocol instead
        handler.addFilter(lambda record: _state.running is None)
    if args.django:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.django
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup()
        if not args.no_autodiscover:
            from django.apps import apps

            for app in apps.get_app_configs():
                name = f"{app.name}.tasks"
                if importlib.util.find_spec(name) is not None:
                    importlib.import_module(name)
    for module in args.imports:
        importlib.import_module(module)
    logging.getLogger().addHandler(_TaskLogHandler(channel))
    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGUSR2, _on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    threading.Thread(target=_watch_parent, name="celeriac-parent-watch", daemon=True).start()
    resolver = Resolver()
    channel.send({"type": "ready", "pid": os.getpid(), "protocol": PROTOCOL_VERSION})
    while True:
        msg = channel.receive()
        if msg is None:
            return 0
        if msg.get("type") == "task":
            run_one(msg, channel, resolver)
        # other types: newer worker; ignore


if __name__ == "__main__":
    sys.exit(main())
