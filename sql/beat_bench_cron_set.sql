-- beat_bench_cron_set: (bench only) change crontab schedule $1 to minute $2, hour $3.
UPDATE django.django_celery_beat_crontabschedule SET minute = $2, hour = $3 WHERE id = $1
