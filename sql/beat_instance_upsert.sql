-- beat_instance_upsert: a beat process says it is alive (and, when leader, what it does).
-- $1 id uuid  $2 hostname text  $3 pid int4  $4 django schema text  $5 is_leader bool
-- $6 schedules int4  $7 bad_rows int4  $8 next_fire_at timestamptz  $9 ticked bool
INSERT INTO celeriac.beat_instances AS b
    (id, hostname, pid, django_schema, is_leader, schedules, bad_rows, next_fire_at, last_tick_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 THEN now() END)
ON CONFLICT (id) DO UPDATE SET
    seen_at      = now(),
    is_leader    = excluded.is_leader,
    schedules    = excluded.schedules,
    bad_rows     = excluded.bad_rows,
    next_fire_at = excluded.next_fire_at,
    last_tick_at = CASE WHEN $9 THEN now() ELSE b.last_tick_at END
