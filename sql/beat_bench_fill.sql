-- beat_bench_fill: (bench only) $1 enabled periodic tasks `bench-<n>` on one new crontab
-- schedule ($2 minute, $3 hour, every day, UTC), sending celeriac.noop to queue bench_beat.
-- Returns: the crontab schedule id.
WITH c AS (
    INSERT INTO django.django_celery_beat_crontabschedule
        (minute, hour, day_of_week, day_of_month, month_of_year, timezone)
    VALUES ($2, $3, '*', '*', '*', 'UTC')
    RETURNING id
), t AS (
    INSERT INTO django.django_celery_beat_periodictask
        (name, task, args, kwargs, queue, headers, one_off, enabled, total_run_count,
         date_changed, description, crontab_id)
    SELECT 'bench-' || g, 'celeriac.noop', '[]', '{}', 'bench_beat', '{}', false, true, 0,
           now(), '', c.id
    FROM generate_series(1, $1) AS g, c
)
SELECT id FROM c
