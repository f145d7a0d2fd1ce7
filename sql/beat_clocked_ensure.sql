-- beat_clocked_ensure: the id of a clocked schedule row for an instant, reusing an identical one.
-- $1 clocked_time timestamptz
-- Returns: id int4.
WITH found AS (
    SELECT id FROM django.django_celery_beat_clockedschedule
    WHERE clocked_time = $1 ORDER BY id LIMIT 1
), made AS (
    INSERT INTO django.django_celery_beat_clockedschedule (clocked_time)
    SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM found)
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM made
