-- beat_fire_log: record sends in the fire log (same transaction as beat_fire and the enqueue).
-- The primary key (periodic_task_id, anchor) fails the whole transaction on a duplicate send.
-- $1 ids int4[]  $2 anchors timestamptz[]  $3 names text[]  $4 slots timestamptz[]
-- $5 task ids uuid[]  $6 catch_up bool[]  $7 leader token int8
INSERT INTO celeriac.beat_fires
    (periodic_task_id, anchor, name, slot, fired_at, lag_s, task_id, catch_up, leader_token)
SELECT e.id, e.anchor, e.name, e.slot, now(), extract(epoch FROM now() - e.slot), e.task_id,
       e.catch_up, $7
FROM unnest($1::int4[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::uuid[], $6::bool[])
     AS e(id, anchor, name, slot, task_id, catch_up)
