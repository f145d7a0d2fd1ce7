-- beat_crontab_ensure: the id of a crontab schedule row, reusing an identical one.
-- $1 minute  $2 hour  $3 day_of_month  $4 month_of_year  $5 day_of_week  $6 timezone (text)
-- Returns: id int4.
WITH found AS (
    SELECT id FROM django.django_celery_beat_crontabschedule
    WHERE minute = $1 AND hour = $2 AND day_of_month = $3 AND month_of_year = $4
      AND day_of_week = $5 AND timezone = $6
    ORDER BY id LIMIT 1
), made AS (
    INSERT INTO django.django_celery_beat_crontabschedule
        (minute, hour, day_of_month, month_of_year, day_of_week, timezone)
    SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM found)
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM made
