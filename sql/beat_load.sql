-- beat_load: periodic tasks with their schedule rows (LEFT JOINs: a bad or missing schedule is
-- reported, not hidden), plus the database clock.
-- $1 only_enabled bool   $2 name text (NULL: every row)
-- Returns: one PeriodicTaskRow per task, ordered by id; `db_now` is clock_timestamp().
SELECT p.id, p.name::text, p.task::text, p.args, p.kwargs, p.queue::text, p.exchange::text,
       p.routing_key::text, p.headers, p.priority, p.expires, p.expire_seconds, p.one_off,
       p.start_time, p.enabled, p.last_run_at, p.total_run_count, p.date_changed, p.description,
       p.interval_id, i.every AS interval_every, i.period::text AS interval_period,
       p.crontab_id, c.minute::text AS cron_minute, c.hour::text AS cron_hour,
       c.day_of_month::text AS cron_day_of_month, c.month_of_year::text AS cron_month_of_year,
       c.day_of_week::text AS cron_day_of_week, c.timezone::text AS cron_timezone,
       p.solar_id, s.event::text AS solar_event, s.latitude::text AS solar_latitude,
       s.longitude::text AS solar_longitude,
       p.clocked_id, k.clocked_time,
       clock_timestamp() AS db_now
FROM django.django_celery_beat_periodictask p
LEFT JOIN django.django_celery_beat_intervalschedule i ON i.id = p.interval_id
LEFT JOIN django.django_celery_beat_crontabschedule c ON c.id = p.crontab_id
LEFT JOIN django.django_celery_beat_solarschedule s ON s.id = p.solar_id
LEFT JOIN django.django_celery_beat_clockedschedule k ON k.id = p.clocked_id
WHERE (p.enabled OR NOT $1) AND ($2::text IS NULL OR p.name = $2)
ORDER BY p.id
