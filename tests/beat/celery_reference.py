"""Reference answers from the real Celery (and ephem) for the beat conformance tests.

Reads one JSON object on stdin:
  {"crontab": [{"spec": [m, h, dom, moy, dow], "tz": "Europe/Berlin",
                "starts": ["2024-03-31T00:00:00+00:00", ...], "count": 8}, ...],
   "solar":   [{"event": "sunrise", "lat": 52.5, "lon": 13.4, "starts": [...]}, ...]}
Writes one JSON object on stdout:
  {"crontab": [{"error": "...", "chains": [{"start": s, "fixed": [...], "raw_first": t}]}],
   "solar": [{"next": [...]}]}
`fixed` chains Celery's next-slot rule from each start, skipping instants at or before the
previous one (Celery's repeated-hour bug, research §6.5); `raw_first` is Celery's own first
answer, bug included.
"""
import json
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import solar
from celery.utils.time import remaining
# django-celery-beat's crontab: each row evaluated in its own zone (importing this module
# needs no Django settings).
from django_celery_beat.tzcrontab import TzAwareCrontab

app = Celery("reference", set_as_current=True)
app.conf.enable_utc = True
app.conf.timezone = "UTC"
FIXED_NOW = datetime(2000, 1, 1, tzinfo=timezone.utc)


def celery_next(c, zone, last):
    """Celery's next slot after `last` (an aware datetime) as an aware UTC datetime."""
    last_tz, delta, _now = c.remaining_delta(last.astimezone(zone), tz=zone)
    return FIXED_NOW + remaining(last_tz, delta, now=FIXED_NOW)


def crontab_case(case):
    m, h, dom, moy, dow = case["spec"]
    try:
        zone = ZoneInfo(case["tz"])
        c = TzAwareCrontab(minute=m, hour=h, day_of_month=dom, month_of_year=moy,
                           day_of_week=dow, tz=zone, app=app)
    except Exception as e:  # ValueError, ParseException
        return {"error": str(e), "chains": []}
    chains = []
    for s in case["starts"]:
        last = datetime.fromisoformat(s)
        raw_first = celery_next(c, zone, last)
        fixed = []
        for _ in range(case["count"]):
            n = celery_next(c, zone, last)
            while n <= last:
                n = celery_next(c, zone, n)
            fixed.append(n.astimezone(timezone.utc).isoformat())
            last = n
        chains.append({"start": s, "fixed": fixed,
                       "raw_first": raw_first.astimezone(timezone.utc).isoformat()})
    return {"error": None, "chains": chains}


def solar_case(case):
    out = []
    s = solar(case["event"], case["lat"], case["lon"], app=app)
    for start in case["starts"]:
        last = datetime.fromisoformat(start)
        now = datetime.now(timezone.utc)
        rem = s.remaining_estimate(last)
        out.append((now + rem).astimezone(timezone.utc).isoformat())
    return {"next": out}


def main():
    req = json.load(sys.stdin)
    json.dump({"crontab": [crontab_case(c) for c in req.get("crontab", [])],
               "solar": [solar_case(c) for c in req.get("solar", [])]}, sys.stdout)


main()
