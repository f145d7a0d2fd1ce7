-- beat_task_upsert: create a periodic task, or (when $17 is true) update the one of the same
-- name. Every NOT NULL column is supplied (the tables have no database defaults). An update
-- changes only what differs and keeps last_run_at / total_run_count (as a Django save of an
-- edited row); an identical row is left alone, so restarting with the same TOML file changes
-- nothing. As Django's save(): '' queue → NULL, date_changed = now(), a disabled row loses
-- last_run_at.
-- $1 name  $2 task  $3 interval_id  $4 crontab_id  $5 solar_id  $6 clocked_id  $7 args text
-- $8 kwargs text  $9 queue  $10 priority int4  $11 headers text  $12 expires timestamptz
-- $13 expire_seconds int4  $14 one_off bool  $15 start_time timestamptz  $16 enabled bool
-- $17 update_existing bool  $18 description text
-- Returns: id, inserted (no row: unchanged, or exists and $17 is false).
INSERT INTO django.django_celery_beat_periodictask AS p (
    name, task, interval_id, crontab_id, solar_id, clocked_id, args, kwargs, queue, exchange,
    routing_key, priority, headers, expires, expire_seconds, one_off, start_time, enabled,
    last_run_at, total_run_count, date_changed, description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, ''), NULL, NULL, $10, $11, $12, $13, $14, $15,
        $16, NULL, 0, now(), $18)
ON CONFLICT (name) DO UPDATE SET
    task = excluded.task, interval_id = excluded.interval_id, crontab_id = excluded.crontab_id,
    solar_id = excluded.solar_id, clocked_id = excluded.clocked_id, args = excluded.args,
    kwargs = excluded.kwargs, queue = excluded.queue, priority = excluded.priority,
    headers = excluded.headers, expires = excluded.expires,
    expire_seconds = excluded.expire_seconds, one_off = excluded.one_off,
    start_time = excluded.start_time, enabled = excluded.enabled,
    last_run_at = CASE WHEN excluded.enabled THEN p.last_run_at END,
    date_changed = now(), description = excluded.description
WHERE $17 AND (p.task, p.interval_id, p.crontab_id, p.solar_id, p.clocked_id, p.args, p.kwargs,
               p.queue, p.priority, p.headers, p.expires, p.expire_seconds, p.one_off,
               p.start_time, p.enabled, p.description)
    IS DISTINCT FROM
              (excluded.task, excluded.interval_id, excluded.crontab_id, excluded.solar_id,
               excluded.clocked_id, excluded.args, excluded.kwargs, excluded.queue,
               excluded.priority, excluded.headers, excluded.expires, excluded.expire_seconds,
               excluded.one_off, excluded.start_time, excluded.enabled, excluded.description)
RETURNING p.id, (xmax = 0) AS inserted
