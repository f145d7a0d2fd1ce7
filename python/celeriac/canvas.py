"""Workflows, Celery-style: signatures, ``chain``, ``group``, ``chord``, nestable.

    from celeriac.canvas import chain, chord, group, sig
    flow = chain(sig("fetch", ["https://x"]), group(sig("parse"), sig("index")), sig("merge"))
    r = flow.apply_async()          # AsyncResult of the last step (GroupResult for a group)
    r.get(timeout=60)

Tasks declared with ``celeriac.task`` (and Celery tasks, via ``celeriac.canvas.s``) have
``.s(*args, **kwargs)`` and ``.si(...)`` (immutable), and ``a.s() | b.s()`` makes a chain.
Everything runs in the database (``celeriac.apply``): ids are given up front, each step is
enqueued in the transaction that finishes the previous one, and a chord calls back exactly
once. A failing member fails what follows it, with its error; ``on_error`` callbacks get the
failed task's id as their first argument.
"""

from . import client as _client

__all__ = ["Signature", "chain", "chord", "group", "s", "si", "sig"]


class _Node:
    link_error = ()

    def on_error(self, errback):
        """Run ``errback`` (a signature) with the failed task's id when any task here fails."""
        node = self._copy()
        node.link_error = tuple(self.link_error) + (_as_node(errback),)
        return node

    link_error_ = on_error

    def __or__(self, other):
        return chain(self, other)

    def _copy(self):
        node = object.__new__(type(self))
        node.__dict__.update(self.__dict__)
        return node

    def to_json(self):
        raise NotImplementedError

    def _with_errbacks(self, d):
        if self.link_error:
            d["link_error"] = list(d.get("link_error", [])) + [e.to_json() for e in self.link_error]
        return d

    def apply_async(self, using=None, connection=None):
        """Apply the workflow; returns the handle on its result (an :class:`AsyncResult`, or a
        :class:`GroupResult` for a group). Joins the current Django transaction like
        ``celeriac.enqueue``."""
        with _client._Cursor(using, connection) as cur:
            cur.execute(f'SELECT "{_client.schema()}".apply(%s::jsonb)', [_client._json(self.to_json())])
            applied = cur.fetchone()[0]
        if isinstance(applied, str):
            import json

            applied = json.loads(applied)
        result_id = applied["id"]
        if isinstance(self, group):
            return GroupResult(result_id, using=using, connection=connection)
        return _client.AsyncResult(result_id, using=using, connection=connection)

    delay = apply_async


class Signature(_Node):
    """One task of a workflow: name, args, kwargs and enqueue options (``queue``,
    ``priority``, ``countdown``, ``expires``, ``max_retries``, ``time_limit``, …)."""

    def __init__(self, task, args=None, kwargs=None, immutable=False, **options):
        self.task = task if isinstance(task, str) else _client.task_name(task)
        self.args = list(args or ())
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.options = options
        self.link = ()
        self.link_error = ()

    def set(self, immutable=None, **options):
        node = self._copy()
        if immutable is not None:
            node.immutable = immutable
        node.options = {**self.options, **options}
        return node

    def link_(self, callback):
        """Also run ``callback`` with this task's result when it succeeds."""
        node = self._copy()
        node.link = tuple(self.link) + (_as_node(callback),)
        return node

    def to_json(self):
        o = {}
        for k, v in self.options.items():
            if v is None:
                continue
            if k in ("countdown", "expires_in", "retry_delay", "retry_backoff_max",
                     "soft_time_limit", "time_limit"):
                v = _client._seconds(v, k)
            elif k == "retry_backoff" and isinstance(v, bool):
                v = 1.0 if v else 0.0
            elif k in ("eta", "expires") and hasattr(v, "isoformat"):
                v = _client._aware(v).isoformat()
            elif k == "expires" and not hasattr(v, "isoformat"):
                k, v = "expires_in", _client._seconds(v, "expires")
            o[k] = v
        d = {"task": self.task, "args": self.args, "kwargs": self.kwargs, "options": o}
        if "task_id" in o:
            d["id"] = str(o.pop("task_id"))
        if self.immutable:
            d["immutable"] = True
        if self.link:
            d["link"] = [c.to_json() for c in self.link]
        return self._with_errbacks(d)

    def __repr__(self):
        return f"{self.task}({', '.join(map(repr, self.args))})"


class chain(_Node):  # noqa: N801 - Celery's name
    """Each result is prepended to the next step's args (unless it is immutable)."""

    def __init__(self, *tasks):
        if len(tasks) == 1 and isinstance(tasks[0], (list, tuple)):
            tasks = tuple(tasks[0])
        flat = []
        for t in tasks:
            flat.extend(t.tasks if isinstance(t, chain) and not t.link_error else [_as_node(t)])
        self.tasks = tuple(flat)

    def to_json(self):
        return self._with_errbacks({"chain": [t.to_json() for t in self.tasks]})


class group(_Node):  # noqa: N801 - Celery's name
    """Run together; the result is the list of results, in order."""

    def __init__(self, *tasks):
        if len(tasks) == 1 and isinstance(tasks[0], (list, tuple)):
            tasks = tuple(tasks[0])
        self.tasks = tuple(_as_node(t) for t in tasks)

    def to_json(self):
        return self._with_errbacks({"group": [t.to_json() for t in self.tasks]})


class chord(_Node):  # noqa: N801 - Celery's name
    """``chord(header, body)`` or ``chord(header)(body)``: the header runs together, then the
    body once with the list of results."""

    def __init__(self, header, body=None):
        self.header = group(header) if not isinstance(header, group) else header
        self.body = _as_node(body) if body is not None else None

    def __call__(self, body, **options):
        node = chord(self.header, body)
        node.link_error = self.link_error
        return node.apply_async(**options)

    def to_json(self):
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header, body) or chord(header)(body)")
        return self._with_errbacks({"chord": {"header": [t.to_json() for t in self.header.tasks],
                                              "body": self.body.to_json()}})


def _as_node(x):
    if isinstance(x, _Node):
        return x
    if isinstance(x, str):
        return Signature(x)
    raise TypeError(f"expected a signature, chain, group or chord, got {x!r}")


def sig(task, args=None, kwargs=None, **options):
    """A signature of ``task`` (a name, a ``celeriac.task`` or a Celery task)."""
    return Signature(task, args, kwargs, **options)


def s(task, *args, **kwargs):
    """Celery's ``task.s(*args, **kwargs)`` for any task object or name."""
    return Signature(task, args, kwargs)


def si(task, *args, **kwargs):
    """Celery's ``task.si(...)``: an immutable signature (ignores the previous result)."""
    return Signature(task, args, kwargs, immutable=True)


class GroupResult:
    """A group's (or chord header's) combined state: ``state``, ``completed_count()``,
    ``results``, ``get(timeout)``."""

    def __init__(self, id, using=None, connection=None):  # noqa: A002 - Celery's name
        self.id = str(id)
        self.using = using
        self.connection = connection

    def info(self):
        with _client._Cursor(self.using, self.connection) as cur:
            cur.execute(f'SELECT "{_client.schema()}".group_result(%s::uuid)', [self.id])
            row = cur.fetchone()
        value = row[0] if row else None
        if isinstance(value, str):
            import json

            value = json.loads(value)
        return value

    @property
    def state(self):
        i = self.info()
        return i["state"] if i else "PENDING"

    def completed_count(self):
        i = self.info()
        return i["completed"] if i else 0

    @property
    def results(self):
        i = self.info()
        return i["results"] if i else []

    def ready(self):
        return self.state in ("SUCCESS", "FAILURE")

    def get(self, timeout=None, propagate=True, **_ignored):
        """Wait until every member finished; their results in order. A failed member raises
        its error (``propagate=True``)."""
        import time

        from . import exceptions

        deadline = None if timeout is None else time.monotonic() + float(timeout)
        conn = _client._listen_connection(self.using, self.connection)
        try:
            cur = conn.cursor()
            cur.execute(f'LISTEN "{_client.schema()}.done"')
            while True:
                i = self.info()
                if i and i["state"] == "SUCCESS":
                    return i["results"]
                if i and i["state"] == "FAILURE":
                    if not propagate:
                        return i["results"]
                    e = i.get("error") or {}
                    raise exceptions.TaskFailed(e.get("type", "GroupFailed"), e.get("message", ""))
                wait = _client.RECHECK_SECONDS
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise exceptions.TimeoutError(f"group {self.id} did not finish within {timeout}s")
                    wait = min(wait, left)
                for payload in _client._wait_notifications(conn, wait):
                    if self.id in payload.split(","):
                        break
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
