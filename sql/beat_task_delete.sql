-- beat_task_delete: delete a periodic task by name (its schedule row stays, as with Django).
-- $1 name text
-- Returns: id (no row: no such task).
DELETE FROM django.django_celery_beat_periodictask WHERE name = $1 RETURNING id
