"""Settings of the test project. The database comes from CELERIAC_DJANGO_DB (a postgres:// URL
given by the test)."""
import os
from urllib.parse import unquote, urlparse

_url = urlparse(os.environ.get("CELERIAC_DJANGO_DB", "postgres://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "celeriac-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
ROOT_URLCONF = "djapp.urls"
MIDDLEWARE = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname,
        "PORT": _url.port or 5432,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {
    "default": {
        "BACKEND": "celeriac.django_tasks.CeleriacBackend",
        "QUEUES": [],
    }
}
CELERY_BROKER_URL = "memory://"
CELERIAC_WEBHOOK_SECRET = os.environ.get("CELERIAC_WEBHOOK_SECRET", "")
