-- beat_disable: disable periodic tasks as Celery's `_disable()`/one-off path does: enabled =
-- false, last_run_at = NULL (PeriodicTask.save() clears it when disabled), date_changed = now();
-- a one-off also gets total_run_count = 0. Only rows still enabled and unchanged since they were
-- read ($3) are touched.
-- $1 ids int4[]   $2 reset_count bool[]   $3 expected date_changed timestamptz[]
-- Returns: id of each row disabled.
UPDATE django.django_celery_beat_periodictask AS p SET
    enabled         = false,
    last_run_at     = NULL,
    total_run_count = CASE WHEN e.reset_count THEN 0 ELSE p.total_run_count END,
    date_changed    = now()
FROM unnest($1::int4[], $2::bool[], $3::timestamptz[]) AS e(id, reset_count, date_changed)
WHERE p.id = e.id AND p.enabled AND p.date_changed = e.date_changed
RETURNING p.id
