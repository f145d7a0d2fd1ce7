"""Settings of the beat test project: only django-celery-beat, on DJBEAT_DATABASE_URL."""
import os
from urllib.parse import urlparse

_url = urlparse(os.environ["DJBEAT_DATABASE_URL"])

SECRET_KEY = "celeriac-beat-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
CELERY_TIMEZONE = "Europe/Berlin"
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
