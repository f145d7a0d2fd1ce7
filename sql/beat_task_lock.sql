-- beat_task_lock: lock a periodic task row by name for a read-modify-write (a partial update
-- through the HTTP API): two concurrent edits of different fields then both survive, instead of
-- the second overwriting the first with what it read before.
-- $1 name text
-- Returns: id (no row: no such task).
SELECT id FROM django.django_celery_beat_periodictask WHERE name = $1 FOR UPDATE
