# The webhook receiver shown in the README ("The webhook envelope"), verbatim.
import hashlib, hmac, json, time

from django.conf import settings
from django.http import HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def celeriac_webhook(request):
    ts = request.headers.get("X-Celeriac-Timestamp", "0")
    sig = request.headers.get("X-Celeriac-Signature", "").removeprefix("v1=")
    mac = hmac.new(settings.CELERIAC_WEBHOOK_SECRET.encode(), f"{ts}.".encode() + request.body, hashlib.sha256)
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300 or not hmac.compare_digest(mac.hexdigest(), sig):
        return HttpResponseForbidden("bad signature")  # 403: FAILURE, not retried
    task = json.loads(request.body)
    # Run it: dispatch on task["task"] with task["args"], task["kwargs"]; task["id"] is an
    # idempotency key (a retry carries the same id).
    return JsonResponse({"handled": task["task"], "args": task["args"]})
