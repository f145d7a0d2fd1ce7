-- beat_task_set_enabled: enable or disable a periodic task by name, as a Django save() does
-- (date_changed = now(); disabling clears last_run_at, so a re-enabled task is anchored at its
-- re-enable time). A task already in that state is left alone: enabling an enabled task must
-- not move its anchor (a double click would postpone its next run), and nothing changed means
-- nothing to tell beat.
-- $1 name text   $2 enabled bool
-- Returns: id, changed (no row: no such task).
WITH changed AS (
    UPDATE django.django_celery_beat_periodictask SET
        enabled      = $2,
        last_run_at  = CASE WHEN $2 THEN last_run_at END,
        date_changed = now()
    WHERE name = $1 AND enabled IS DISTINCT FROM $2
    RETURNING id
)
SELECT p.id, EXISTS (SELECT 1 FROM changed) AS changed
FROM django.django_celery_beat_periodictask p
WHERE p.name = $1
