-- beat_interval_ensure: the id of an interval schedule row (every, period), reusing an existing
-- identical row as Django's IntervalSchedule.from_schedule() does, else inserting one.
-- $1 every int4   $2 period text
-- Returns: id int4.
WITH found AS (
    SELECT id FROM django.django_celery_beat_intervalschedule
    WHERE every = $1 AND period = $2 ORDER BY id LIMIT 1
), made AS (
    INSERT INTO django.django_celery_beat_intervalschedule (every, period)
    SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM found)
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM made
