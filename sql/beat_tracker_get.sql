-- beat_tracker_get: django-celery-beat's change tracker, polled as a fallback when the change
-- triggers are missing or notifications are lost.
-- Returns: last_update timestamptz (NULL: no row yet).
SELECT (SELECT last_update FROM django.django_celery_beat_periodictasks WHERE ident = 1)
