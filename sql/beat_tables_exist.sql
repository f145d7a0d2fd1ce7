-- beat_tables_exist: which of django-celery-beat's six tables exist in schema $1 (any owner).
-- $1 schema text
-- Returns: relname text, one row per existing table.
SELECT c.relname::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1
  AND c.relkind IN ('r', 'p')
  AND c.relname IN ('django_celery_beat_periodictask', 'django_celery_beat_intervalschedule',
                    'django_celery_beat_crontabschedule', 'django_celery_beat_solarschedule',
                    'django_celery_beat_clockedschedule', 'django_celery_beat_periodictasks')
