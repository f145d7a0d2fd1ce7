-- queue_set_paused: pause ($2 = true) or resume a queue cluster-wide. Paused queues are not
-- claimed; running tasks finish. Resuming wakes the queue's workers.
-- $1 queue text   $2 paused bool   $3 wakeup channel text
-- Returns: nothing.
WITH up AS (
    INSERT INTO celeriac.queues (name, paused) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = now()
    RETURNING name, paused
)
SELECT (SELECT count(pg_notify($3, up.name)) FROM up WHERE NOT up.paused) AS woken
