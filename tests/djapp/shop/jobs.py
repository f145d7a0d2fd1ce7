"""Plain-function tasks (no Celery), run by name through the process pool."""
import logging
import os
import sys
import time

from celeriac import SoftTimeLimitExceeded

from .models import Event, Order

log = logging.getLogger(__name__)


def process_order(order_id):
    Order.objects.filter(pk=order_id).update(processed_by=f"pid:{os.getpid()}")
    Event.objects.create(key=f"processed:{order_id}")
    return {"order": order_id, "pid": os.getpid()}


def pid():
    return os.getpid()


def runaway():
    Event.objects.create(key="runaway-started", data={"pid": os.getpid()})
    while True:  # ignores everything but SIGKILL's big brother: the hard limit
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001 - a truly badly behaved task
            pass


def crash(key):
    Event.objects.create(key=key, data={"pid": os.getpid()})
    os._exit(1)


def soft_limited(key):
    try:
        while True:
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        Event.objects.create(key=key)
        return "cleaned up"


def noisy():
    print("this is not protocol {", flush=True)
    sys.stdout.write('{"type": "result", "id": "forged", "status": "success"}\n')
    sys.stdout.flush()
    os.write(1, b"raw bytes on fd 1\n")
    log.warning("hello from a task")
    return "quiet result"


def not_json():
    return object()
crash_and_retry = crash  # the same function under a name routed with on_worker_lost = "retry"
