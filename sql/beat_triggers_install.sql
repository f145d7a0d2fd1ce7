-- beat_triggers_install: install the statement-level change triggers (celeriac.beat_changed(),
-- migrations/V2__beat.sql) on the six django_celery_beat tables, unless already there. Adds
-- triggers only: the tables' columns, constraints and indexes are never touched, so tables
-- created by Django stay exactly Django's. One trigger per Celeriac schema
-- (`beat_changed_<schema>`). `django.` is the tables' schema. No parameters.
DO $$
DECLARE
    t       text;
    rel     regclass;
    tg_name text := 'beat_changed_' || split_part('celeriac.beat_changed', '.', 1);
BEGIN
    FOREACH t IN ARRAY ARRAY['django_celery_beat_periodictask', 'django_celery_beat_intervalschedule',
                             'django_celery_beat_crontabschedule', 'django_celery_beat_solarschedule',
                             'django_celery_beat_clockedschedule', 'django_celery_beat_periodictasks']
    LOOP
        rel := to_regclass('django.' || t);
        IF rel IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = tg_name
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION celeriac.beat_changed()', tg_name, rel);
        END IF;
    END LOOP;
END
$$
