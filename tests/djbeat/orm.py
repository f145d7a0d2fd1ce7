"""ORM actions for the beat tests: `python orm.py ACTION [ARG...]`, JSON on stdout.

  setup                 create the end-to-end schedules (interval, crontab, clocked one-off,
                        expired, disabled) through the ORM, as a Django app would
  state                 every periodic task as JSON (name → fields)
  bulk_enable NAME      the admin's bulk "enable" action: QuerySet.update + update_changed()
  queryset_disable NAME QuerySet.update(enabled=False) alone (no change tracker bump)
  save_every NAME N     load, change the interval to every N seconds, save() (a Django save)
"""
import json
import os
import sys
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbeat.settings")
import django  # noqa: E402

django.setup()
from django.utils import timezone  # noqa: E402
from django_celery_beat.models import (  # noqa: E402
    ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks)


def setup():
    now = timezone.now()
    every1 = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="dj-interval", task="celeriac.echo", interval=every1,
        args=json.dumps(["a", 1]), kwargs=json.dumps({"k": "v"}), queue="beatq",
        priority=5, headers=json.dumps({"x-custom": "h"}), expire_seconds=30)
    nightly = CrontabSchedule.objects.create(
        minute="0", hour="4", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone="Europe/Berlin")
    # A start_time in the past with no last_run_at: Celery sends it at once.
    PeriodicTask.objects.create(
        name="dj-crontab", task="celeriac.noop", crontab=nightly,
        start_time=now - timedelta(hours=1))
    clocked = ClockedSchedule.objects.create(clocked_time=now - timedelta(seconds=5))
    PeriodicTask.objects.create(
        name="dj-once", task="celeriac.noop", clocked=clocked, one_off=True)
    PeriodicTask.objects.create(
        name="dj-expired", task="celeriac.noop", interval=every1,
        expires=now - timedelta(minutes=1))
    PeriodicTask.objects.create(
        name="dj-disabled", task="celeriac.noop", interval=every1, enabled=False)
    return {"ok": True}


def state():
    out = {}
    for t in PeriodicTask.objects.all():
        out[t.name] = {
            "enabled": t.enabled,
            "last_run_at": t.last_run_at.isoformat() if t.last_run_at else None,
            "total_run_count": t.total_run_count,
            "date_changed": t.date_changed.isoformat(),
            "one_off": t.one_off,
        }
    return out


def main():
    action, args = sys.argv[1], sys.argv[2:]
    if action == "setup":
        result = setup()
    elif action == "state":
        result = state()
    elif action == "bulk_enable":
        n = PeriodicTask.objects.filter(name=args[0]).update(enabled=True)
        PeriodicTasks.update_changed()
        result = {"updated": n}
    elif action == "queryset_disable":
        result = {"updated": PeriodicTask.objects.filter(name=args[0]).update(enabled=False)}
    elif action == "save_every":
        t = PeriodicTask.objects.get(name=args[0])
        t.interval = IntervalSchedule.objects.create(
            every=int(args[1]), period=IntervalSchedule.SECONDS)
        t.save()
        result = {"saved": t.pk}
    else:
        raise SystemExit(f"unknown action {action}")
    json.dump(result, sys.stdout)


main()
