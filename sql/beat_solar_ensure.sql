-- beat_solar_ensure: the id of the solar schedule row (event, latitude, longitude), which is
-- unique in Django's schema.
-- $1 event text   $2 latitude numeric   $3 longitude numeric
-- Returns: id int4.
INSERT INTO django.django_celery_beat_solarschedule AS s (event, latitude, longitude)
VALUES ($1, $2::numeric(9,6), $3::numeric(9,6))
ON CONFLICT (event, latitude, longitude) DO UPDATE SET event = s.event
RETURNING id
