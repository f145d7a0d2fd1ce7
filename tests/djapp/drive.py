"""Drives the test project from tests/it/runner.rs: one command per run, one JSON line out.

    python drive.py <command> [args...]     (CELERIAC_DJANGO_DB = the test database URL)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djapp.settings")

import django  # noqa: E402

django.setup()

import celeriac  # noqa: E402
from django.db import transaction  # noqa: E402
from shop import dtasks, jobs, tasks  # noqa: E402
from shop.models import Event, Order  # noqa: E402


class Rollback(Exception):
    pass


def out(**kw):
    print(json.dumps(kw, default=str))


def main(cmd, *args):
    if cmd == "atomic":
        ids = {}
        try:
            with transaction.atomic():
                order = Order.objects.create(note=args[0])
                r = celeriac.delay(jobs.process_order, order.pk)
                ids = {"task_id": r.id, "order_id": order.pk}
                if args[0] == "rollback":
                    raise Rollback()
        except Rollback:
            pass
        out(**ids)
    elif cmd == "order":
        o = Order.objects.filter(pk=int(args[0])).first()
        out(exists=o is not None, processed_by=o.processed_by if o else None)
    elif cmd == "events":
        out(count=Event.objects.filter(key=args[0]).count(),
            data=[e.data for e in Event.objects.filter(key=args[0]).order_by("id")])
    elif cmd == "get":
        r = celeriac.AsyncResult(args[0])
        try:
            value = r.get(timeout=float(args[1]) if len(args) > 1 else 30)
            out(state=r.state, result=value)
        except Exception as e:  # noqa: BLE001
            out(state=r.state, error=type(e).__name__, message=str(e))
    elif cmd == "celery":
        # Existing call sites: .delay()/.apply_async() on the Celery tasks, routed to Celeriac.
        celeriac.use_for_celery()
        out(add=tasks.add.delay(2, 3).id,
            flaky=tasks.flaky.delay("flaky-1").id,
            renamed=tasks.renamed.apply_async(("x",)).id,
            auto=celeriac.delay(tasks.always_key_error, "auto-1").id)
    elif cmd == "django-enqueue":
        with transaction.atomic():
            a = dtasks.total.enqueue(2, 3)
            b = dtasks.with_context.enqueue(x=7)
            c = dtasks.fails.enqueue()
        out(total=a.id, with_context=b.id, fails=c.id, status=str(a.status))
    elif cmd == "django-result":
        task = {"total": dtasks.total, "with_context": dtasks.with_context, "fails": dtasks.fails}[args[0]]
        r = task.get_result(args[1])
        errors = [{"path": e.exception_class_path, "class": e.exception_class.__name__} for e in r.errors]
        value = r.return_value if r.status == "SUCCESSFUL" else None
        out(status=str(r.status), value=value, errors=errors, attempts=r.attempts,
            finished=r.is_finished, enqueued_at=r.enqueued_at)
    elif cmd == "enqueue":
        name, a = args[0], json.loads(args[1]) if len(args) > 1 else []
        options = json.loads(args[2]) if len(args) > 2 else {}
        out(task_id=celeriac.enqueue(name, a, **options).id)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
