"""Workflows, unique tasks and locks through the Python client (no Django), against a worker
that runs the m.* tasks of tests/it/flow.rs. Prints one JSON object.

    CELERIAC_DATABASE_URL=postgres://… python flow_check.py
"""
import json
import subprocess
import sys

import celeriac
from celeriac import chain, chord, group, sig

out = {}

out["chain"] = chain(sig("m.add", [2, 3]), sig("m.double"), sig("m.double")).apply_async().get(timeout=30)
out["pipe"] = (sig("m.add", [1, 1]) | sig("m.double")).apply_async().get(timeout=30)
out["immutable"] = chain(sig("m.add", [1, 1]), sig("m.add", [5, 5]).set(immutable=True)).apply_async().get(timeout=30)
g = group(*[sig("m.double", [i]) for i in range(3)])
gr = g.apply_async()
out["group"] = gr.get(timeout=30)
out["group_state"] = [gr.state, gr.completed_count()]
out["chord"] = chord([sig("m.double", [1]), sig("m.double", [2])])(sig("m.sum")).get(timeout=30)
out["nested"] = chain(
    sig("m.add", [1, 2]),
    group(sig("m.double"), chain(sig("m.double"), sig("m.double"))),
    sig("m.sum"),
).apply_async().get(timeout=30)
try:
    chain(sig("m.add", [1, 1]), sig("m.fail"), sig("m.double")).apply_async().get(timeout=30)
    out["failure"] = "no error"
except Exception as e:  # noqa: BLE001
    out["failure"] = type(e).__name__

a = celeriac.enqueue("u.key", unique_key="py-unique", countdown=3600)
b = celeriac.enqueue("u.key", unique_key="py-unique", countdown=3600)
out["unique_same"] = a.id == b.id

child = (
    "import celeriac, sys, json\n"
    "l = celeriac.lock('py-lock', ttl=30, wait=float(sys.argv[1]))\n"
    "ok = l.acquire()\n"
    "print(json.dumps({'ok': ok, 'token': l.token}))\n"
    "l.release()\n"
)
with celeriac.lock("py-lock", ttl=30) as held:
    first = held.token
    busy = json.loads(subprocess.run([sys.executable, "-c", child, "0"], capture_output=True,
                                     text=True, check=True).stdout)
    waiter = subprocess.Popen([sys.executable, "-c", child, "10"], stdout=subprocess.PIPE, text=True)
    import time

    time.sleep(0.3)
out["lock_busy"] = busy["ok"]
got = json.loads(waiter.communicate(timeout=30)[0])
out["lock_waited"] = got["ok"]
out["tokens_grow"] = got["token"] > first
stale = celeriac.lock("py-lock", ttl=0.2)
stale.acquire()
time.sleep(0.4)
out["stale_extend"] = stale.extend(5)
out["stale_release"] = stale.release()
try:
    with celeriac.lock("py-held", ttl=30), celeriac.lock("py-held", ttl=30, wait=0.2):
        pass
    out["not_acquired"] = False
except celeriac.LockNotAcquired:
    out["not_acquired"] = True
print(json.dumps(out))
