-- beat_tracker_bump: bump django-celery-beat's change tracker (PeriodicTasks.update_changed()),
-- so a real `celery beat` running against the same tables notices the change too.
INSERT INTO django.django_celery_beat_periodictasks (ident, last_update) VALUES (1, now())
ON CONFLICT (ident) DO UPDATE SET last_update = excluded.last_update
