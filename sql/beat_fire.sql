-- beat_fire: write back the sends of due periodic tasks, guarded, in beat's fire transaction
-- (the caller then enqueues exactly the rows returned and logs them, in the same transaction).
-- A row is taken only if it is still enabled, still has the last_run_at and date_changed the
-- slot was computed from (another beat, an admin save or a disable in between → skipped and
-- re-read), and its slot is due by the database clock. UPDATE re-checks these conditions on the
-- newest row version after waiting for a concurrent writer's lock, so two beats can never both
-- take the same slot. As Celery: last_run_at = the send time, total_run_count + 1,
-- date_changed = now() (auto_now); a one-off ends enabled=false, total_run_count=0,
-- last_run_at=NULL (Celery's final state, here written at once instead of minutes later).
-- $1 ids int4[]  $2 expected last_run_at timestamptz[]  $3 expected date_changed timestamptz[]
-- $4 slots timestamptz[]  $5 one_off bool[]
-- Returns: id, now (the send time) of each row taken.
UPDATE django.django_celery_beat_periodictask AS p SET
    last_run_at     = CASE WHEN e.one_off THEN NULL ELSE now() END,
    total_run_count = CASE WHEN e.one_off THEN 0 ELSE p.total_run_count + 1 END,
    enabled         = NOT e.one_off,
    date_changed    = now()
FROM unnest($1::int4[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::bool[])
     AS e(id, last_run_at, date_changed, slot, one_off)
WHERE p.id = e.id
  AND p.enabled
  AND p.last_run_at IS NOT DISTINCT FROM e.last_run_at
  AND p.date_changed = e.date_changed
  AND e.slot <= now()
RETURNING p.id, now() AS sent_at
