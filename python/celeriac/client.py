"""Enqueue tasks and read their results.

The database connection is, in order: the ``connection=`` given to a call (a DB-API connection
or a Django connection), Django's connection ``using`` (default ``"default"``) when Django is
configured — so an enqueue inside ``transaction.atomic()`` commits or rolls back with it — or a
connection of this module's own to ``CELERIAC_DATABASE_URL`` / ``DATABASE_URL`` (psycopg 3 or
psycopg2, autocommit).

The schema is ``CELERIAC_SCHEMA`` (Django setting, else environment variable), default
``celeriac``.
"""

import datetime as _dt
import json
import os
import re
import select
import sys
import threading
import time
import uuid

from . import exceptions

#: AsyncResult.get re-reads the row this often even without a notification.
RECHECK_SECONDS = 5.0

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_local = threading.local()

# Options of Celery's apply_async that only concern a broker: accepted and ignored.
_BROKER_ONLY = {
    "retry",
    "retry_policy",
    "serializer",
    "compression",
    "exchange",
    "routing_key",
    "mandatory",
    "immediate",
    "delivery_mode",
    "producer",
    "add_to_parent",
    "publisher",
    "reply_to",
    "correlation_id",
    "exchange_type",
}
_OPTIONS = {
    "queue",
    "priority",
    "countdown",
    "eta",
    "expires",
    "task_id",
    "max_retries",
    "retry_delay",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "soft_time_limit",
    "time_limit",
    "ignore_result",
    "headers",
    "unique_key",
    "unique_scope",
    "unique_window",
    "using",
    "connection",
}


# ─── connections ──────────────────────────────────────────────────────────────────────────────


def _django_ready():
    if "django" not in sys.modules:
        return False
    try:
        from django.apps import apps
        from django.conf import settings

        return settings.configured and apps.ready
    except Exception:  # noqa: BLE001
        return False


def schema():
    """The schema holding Celeriac's tables."""
    name = None
    if _django_ready():
        from django.conf import settings

        name = getattr(settings, "CELERIAC_SCHEMA", None)
    name = name or os.environ.get("CELERIAC_SCHEMA") or "celeriac"
    if not _SCHEMA_RE.match(name):
        raise ValueError(f"bad schema name {name!r}")
    return name


def _dsn():
    dsn = os.environ.get("CELERIAC_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not dsn:
        raise RuntimeError(
            "celeriac: no database: configure Django, pass connection=, or set CELERIAC_DATABASE_URL"
        )
    return dsn


def _connect_dsn(dsn):
    try:
        import psycopg

        return psycopg.connect(dsn, autocommit=True)
    except ImportError:
        pass
    try:
        import psycopg2
    except ImportError:
        raise RuntimeError("celeriac: install psycopg (3) or psycopg2 to connect without Django") from None
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def _own_connection():
    conn = getattr(_local, "conn", None)
    if conn is not None and not getattr(conn, "closed", False):
        return conn
    conn = _connect_dsn(_dsn())
    _local.conn = conn
    return conn


class _Cursor:
    """A cursor on the connection chosen as the module docstring says."""

    def __init__(self, using=None, connection=None):
        self.using = using
        self.connection = connection
        self.cur = None

    def __enter__(self):
        if self.connection is not None:
            self.cur = self.connection.cursor()
        elif _django_ready():
            from django.db import connections

            self.cur = connections[self.using or "default"].cursor()
        else:
            self.cur = _own_connection().cursor()
        return self.cur

    def __exit__(self, *exc):
        try:
            self.cur.close()
        except Exception:  # noqa: BLE001
            pass
        return False


def _listen_connection(using=None, connection=None):
    """A separate autocommit connection for LISTEN (never the caller's transaction)."""
    if connection is None and _django_ready():
        from django.db import connections

        dj = connections[using or "default"]
        raw = dj.get_new_connection(dj.get_connection_params())
        try:
            raw.autocommit = True
        except Exception:  # noqa: BLE001 - psycopg2 older API
            raw.set_session(autocommit=True)
        return raw
    if connection is not None:
        # Same server as the given connection: psycopg exposes its DSN.
        info = getattr(connection, "info", None)
        dsn = getattr(info, "dsn", None) or getattr(connection, "dsn", None)
        if dsn:
            return _connect_dsn(dsn)
    return _connect_dsn(_dsn())


def _wait_notifications(conn, timeout):
    """Payloads received within ``timeout`` seconds (empty list when none)."""
    if hasattr(conn, "notifies") and callable(conn.notifies):  # psycopg 3
        try:
            return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]
        except TypeError:  # psycopg < 3.2: no timeout; fall back to a plain wait
            time.sleep(min(timeout, 0.5))
            conn.execute("SELECT 1")
            return []
    # psycopg2
    if conn.notifies:
        out = [n.payload for n in conn.notifies]
        del conn.notifies[:]
        return out
    r, _, _ = select.select([conn], [], [], timeout)
    if not r:
        return []
    conn.poll()
    out = [n.payload for n in conn.notifies]
    del conn.notifies[:]
    return out


# ─── enqueue ──────────────────────────────────────────────────────────────────────────────────


def _seconds(v, what):
    if v is None:
        return None
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise TypeError(f"{what} must be a number of seconds or a timedelta, got {v!r}")


def _aware(v):
    if v.tzinfo is None:
        return v.replace(tzinfo=_dt.timezone.utc)
    return v


def _json(v):
    return json.dumps(v, default=_json_default)


def _json_default(o):
    if isinstance(o, (_dt.datetime, _dt.date, _dt.time)):
        return o.isoformat()
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return list(o)
    try:
        import decimal

        if isinstance(o, decimal.Decimal):
            return str(o)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def enqueue(name, args=None, kwargs=None, **options):
    """Enqueue task ``name`` and return its :class:`AsyncResult`.

    Options: ``queue``, ``priority`` (0–255, higher first), ``countdown`` (s or timedelta),
    ``eta`` (datetime; naive = UTC), ``expires`` (s, timedelta or datetime), ``task_id``,
    ``max_retries``, ``retry_delay``, ``retry_backoff`` (factor in s; True = 1),
    ``retry_backoff_max``, ``retry_jitter``, ``soft_time_limit``, ``time_limit``,
    ``ignore_result``, ``headers``; ``unique_key`` (+ ``unique_scope`` ``"queued"`` (default),
    ``"active"`` or ``"window"`` with ``unique_window`` seconds): while a task with that key is
    live, enqueueing again returns it instead of adding one; ``using`` (Django database alias)
    or ``connection``.
    Celery's broker-only options (``retry``, ``serializer``, ``routing_key``, …) are ignored.
    """
    unknown = set(options) - _OPTIONS - _BROKER_ONLY
    if unknown:
        raise TypeError(f"celeriac.enqueue: unsupported option(s) {', '.join(sorted(unknown))}")
    if not isinstance(name, str) or not name:
        raise TypeError("celeriac.enqueue: the task name must be a non-empty string")
    args = list(args or ())
    kwargs = dict(kwargs or {})
    sql_args = [name, _json(args), _json(kwargs)]
    named = []

    def opt(key, value, cast=""):
        if value is not None:
            named.append(f"{key} => %s{cast}")
            sql_args.append(value)

    opt("queue", options.get("queue"))
    opt("priority", options.get("priority"), "::integer")
    countdown = _seconds(options.get("countdown"), "countdown")
    eta = options.get("eta")
    if countdown is not None and eta is not None:
        raise ValueError("give countdown or eta, not both")
    opt("countdown", countdown, "::float8")
    if eta is not None:
        if not isinstance(eta, _dt.datetime):
            raise TypeError("eta must be a datetime")
        opt("eta", _aware(eta).isoformat(), "::timestamptz")
    expires = options.get("expires")
    if isinstance(expires, _dt.datetime):
        opt("expires", _aware(expires).isoformat(), "::timestamptz")
    else:
        opt("expires_in", _seconds(expires, "expires"), "::float8")
    task_id = options.get("task_id")
    opt("task_id", str(task_id) if task_id is not None else None, "::uuid")
    opt("max_retries", options.get("max_retries"), "::integer")
    opt("retry_delay", _seconds(options.get("retry_delay"), "retry_delay"), "::float8")
    backoff = options.get("retry_backoff")
    if backoff is True:
        backoff = 1
    elif backoff is False:
        backoff = 0
    opt("retry_backoff", _seconds(backoff, "retry_backoff"), "::float8")
    opt("retry_backoff_max", _seconds(options.get("retry_backoff_max"), "retry_backoff_max"), "::float8")
    opt("retry_jitter", options.get("retry_jitter"), "::boolean")
    opt("soft_time_limit", _seconds(options.get("soft_time_limit"), "soft_time_limit"), "::float8")
    opt("time_limit", _seconds(options.get("time_limit"), "time_limit"), "::float8")
    opt("ignore_result", options.get("ignore_result"), "::boolean")
    headers = options.get("headers")
    opt("headers", _json(headers) if headers is not None else None, "::jsonb")
    opt("unique_key", options.get("unique_key"))
    opt("unique_scope", options.get("unique_scope"))
    opt("unique_window", _seconds(options.get("unique_window"), "unique_window"), "::float8")
    extra = "".join(", " + n for n in named)
    sql = f'SELECT "{schema()}".enqueue(%s, %s::jsonb, %s::jsonb{extra})'
    with _Cursor(options.get("using"), options.get("connection")) as cur:
        cur.execute(sql, sql_args)
        task_id = cur.fetchone()[0]
    return AsyncResult(str(task_id), using=options.get("using"), connection=options.get("connection"))


def send_task(name, args=None, kwargs=None, **options):
    """Celery's ``app.send_task(name, args, kwargs, **options)``."""
    return enqueue(name, args, kwargs, **options)


def task_name(task):
    """The Celeriac name of a task given as a name, a Celery task, a Django ``@task``, a
    function decorated with :func:`celeriac.task`, or a plain module-level function."""
    if isinstance(task, str):
        return task
    module_path = getattr(task, "module_path", None)  # django.tasks.Task
    if isinstance(module_path, str) and hasattr(task, "func"):
        return module_path
    name = getattr(task, "name", None)  # Celery task / celeriac task
    if isinstance(name, str) and name:
        return name
    if callable(task) and hasattr(task, "__module__") and hasattr(task, "__qualname__"):
        return f"{task.__module__}.{task.__qualname__}"
    raise TypeError(f"cannot tell the task name of {task!r}")


def _defaults_of(task):
    """Options a Celery task declares in its decorator that the row needs (time limits are
    enforced by the worker, which must know them when the task starts)."""
    out = {}
    if isinstance(task, str):
        return out
    for key in ("queue", "time_limit", "soft_time_limit", "ignore_result"):
        value = getattr(task, key, None)
        if value is not None and not callable(value):
            out[key] = value
    return out


def apply_async(task, args=None, kwargs=None, **options):
    """Celery's ``task.apply_async(args, kwargs, **options)`` for ``task`` (a name or a task
    object): enqueue it into Celeriac."""
    for unsupported in ("link", "link_error", "chain", "shadow"):
        if options.get(unsupported):
            raise NotImplementedError(f"celeriac.apply_async: {unsupported}= is not supported")
        options.pop(unsupported, None)
    merged = _defaults_of(task)
    merged.update({k: v for k, v in options.items() if v is not None})
    return enqueue(task_name(task), args, kwargs, **merged)


def delay(task, *args, **kwargs):
    """Celery's ``task.delay(*args, **kwargs)``."""
    return apply_async(task, args, kwargs)


# ─── results ──────────────────────────────────────────────────────────────────────────────────

_FINISHED = ("SUCCESS", "FAILURE", "REVOKED")


class AsyncResult:
    """A task's state and result, read from its row (Celery's ``AsyncResult``)."""

    def __init__(self, id, using=None, connection=None):  # noqa: A002 - Celery's name
        self.id = str(id)
        self.using = using
        self.connection = connection

    task_id = property(lambda self: self.id)

    def __repr__(self):
        return f"<AsyncResult: {self.id}>"

    def __str__(self):
        return self.id

    def __eq__(self, other):
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    # jsonb as text: Django's cursors return jsonb undecoded, plain psycopg decodes it.
    _COLUMNS = "celery_state, state, result::text, error::text, progress::text, name, retries, attempt"

    def _fetch(self, cur=None):
        sql = f'SELECT {self._COLUMNS} FROM "{schema()}".task_states WHERE id = %s::uuid'
        if cur is not None:
            cur.execute(sql, [self.id])
            row = cur.fetchone()
        else:
            with _Cursor(self.using, self.connection) as c:
                c.execute(sql, [self.id])
                row = c.fetchone()
        if row is None:
            return None
        keys = ("celery_state", "state", "result", "error", "progress", "name", "retries", "attempt")
        out = dict(zip(keys, row))
        for k in ("result", "error", "progress"):
            if out[k] is not None:
                out[k] = json.loads(out[k])
        return out

    def info_row(self):
        """The raw record (dict) or None when no such task exists (or it was pruned)."""
        return self._fetch()

    @property
    def state(self):
        row = self._fetch()
        return row["celery_state"] if row else "PENDING"

    status = state

    @staticmethod
    def _value(row):
        if row is None:
            return None
        if row["celery_state"] == "SUCCESS":
            return row["result"]
        if row["state"] in ("FAILURE", "REVOKED"):
            return exceptions.rebuild(row["error"] or {"type": "TaskRevokedError", "message": "revoked"})
        if row["state"] == "STARTED" and row["progress"] is not None:
            return row["progress"]
        return None

    @property
    def result(self):
        return self._value(self._fetch())

    info = result

    @property
    def traceback(self):
        row = self._fetch()
        return (row or {}).get("error", {}) and row["error"].get("traceback")

    def ready(self):
        return self.state in _FINISHED

    def successful(self):
        return self.state == "SUCCESS"

    def failed(self):
        return self.state == "FAILURE"

    def revoke(self, terminate=False, **_ignored):
        with _Cursor(self.using, self.connection) as cur:
            cur.execute(f'SELECT "{schema()}".revoke(%s::uuid, %s)', [self.id, bool(terminate)])
            return cur.fetchone()[0]

    def get(self, timeout=None, propagate=True, interval=None, **_ignored):
        """Wait for the task to finish and return its result; raise its error when it ended
        FAILURE/REVOKED (``propagate=True``), :class:`celeriac.exceptions.TimeoutError` after
        ``timeout`` seconds. Waits on ``LISTEN "<schema>.done"`` with a slow re-check."""
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        recheck = RECHECK_SECONDS if interval is None else max(float(interval), 0.05)
        conn = _listen_connection(self.using, self.connection)
        try:
            cur = conn.cursor()
            cur.execute(f'LISTEN "{schema()}.done"')
            while True:
                # Read after LISTEN so a completion between the two is not missed.
                row = self._fetch(cur)
                if row is not None and row["state"] in _FINISHED:
                    value = self._value(row)
                    if isinstance(value, BaseException):
                        if propagate:
                            raise value
                    return value
                wait = recheck
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise exceptions.TimeoutError(f"task {self.id} did not finish within {timeout}s")
                    wait = min(wait, left)
                for payload in _wait_notifications(conn, wait):
                    if self.id in payload.split(","):
                        break
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    wait = get


# ─── locks ────────────────────────────────────────────────────────────────────────────────────


class lock:  # noqa: N801 - used as ``with celeriac.lock(...)``
    """A named lease lock shared by every process on the database (``celeriac.locks``).

        with celeriac.lock("reports:42", ttl=60, wait=10) as held:
            write_report(fencing_token=held.token)

    Held until released or until ``ttl`` seconds pass (``extend(ttl)`` renews it). Every
    acquisition gets a larger ``token``: pass it to what the lock protects and refuse writes
    with an older one. A holder whose lease ran out cannot release or extend it. Uses its own
    autocommit connection, never the caller's transaction. Raises
    :class:`celeriac.exceptions.LockNotAcquired` when not acquired within ``wait`` seconds
    (``acquire()`` returns False instead).
    """

    def __init__(self, name, ttl=60, wait=0, holder=None, using=None, connection=None):
        if not name:
            raise ValueError("a lock needs a name")
        self.name = name
        self.ttl = _seconds(ttl, "ttl")
        self.wait = _seconds(wait, "wait") or 0.0
        self.holder = holder
        self.using = using
        self.connection = connection
        self.token = None
        self._conn = None

    def acquire(self):
        """Take the lock, waiting up to ``wait`` seconds on the release notification (or the
        holder's expiry). True when taken."""
        if self._conn is None:
            self._conn = _listen_connection(self.using, self.connection)
        cur = self._conn.cursor()
        s = schema()
        if self.wait > 0:
            cur.execute(f'LISTEN "{s}.locks"')
        deadline = time.monotonic() + self.wait
        while True:
            cur.execute(f'SELECT "{s}".lock_try(%s, %s::float8, %s)', [self.name, self.ttl, self.holder])
            token = cur.fetchone()[0]
            if token is not None:
                self.token = token
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cur.execute(
                f'SELECT extract(epoch FROM expires_at - clock_timestamp())::float8 FROM "{s}".locks '
                "WHERE name = %s AND expires_at > clock_timestamp()",
                [self.name],
            )
            row = cur.fetchone()
            expires_in = row[0] if row else 0.0
            wait = min(max(expires_in + 0.005, 0.0), left, 1.0)
            for payload in _wait_notifications(self._conn, wait):
                if payload == self.name:
                    break

    def extend(self, ttl=None):
        """Renew for ``ttl`` seconds (default: the original ttl); False when the lock was lost."""
        if self.token is None:
            return False
        cur = self._conn.cursor()
        cur.execute(
            f'SELECT "{schema()}".lock_extend(%s, %s, %s::float8)',
            [self.name, self.token, _seconds(ttl, "ttl") or self.ttl],
        )
        return bool(cur.fetchone()[0])

    def release(self):
        """Release now; False when the lock was lost before (expired, maybe taken since)."""
        if self.token is None or self._conn is None:
            return False
        try:
            cur = self._conn.cursor()
            cur.execute(f'SELECT "{schema()}".lock_release(%s, %s)', [self.name, self.token])
            return bool(cur.fetchone()[0])
        finally:
            self.token = None
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None

    def __enter__(self):
        if not self.acquire():
            self.release()
            raise exceptions.LockNotAcquired(f"lock {self.name!r} not acquired within {self.wait}s")
        return self

    def __exit__(self, *exc):
        self.release()
        return False
