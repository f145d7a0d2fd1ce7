-- task_rescue_orphans: running tasks whose worker is gone (no row, or heartbeat lease expired)
-- go back to PENDING with `lost` incremented, or end FAILURE WorkerLostError once lost exceeds
-- $1. The attempt number is left as it is, so a late write from the lost attempt is refused.
-- $1 max_lost int4   $2 wakeup channel text   $3 done channel text
-- Returns: requeued bigint, failed bigint.
WITH rescued AS (
    UPDATE celeriac.tasks t SET
        lost        = t.lost + 1,
        state       = CASE WHEN t.lost + 1 > $1 THEN 'FAILURE' ELSE 'PENDING' END,
        finished_at = CASE WHEN t.lost + 1 > $1 THEN now() END,
        error       = jsonb_build_object(
                        'type', 'WorkerLostError',
                        'message', format('worker %s stopped heartbeating during attempt %s (lost %s time(s))',
                                          t.worker_id, t.attempt, t.lost + 1),
                        'traceback', NULL),
        worker_id   = NULL,
        terminate   = false
    WHERE t.id = ANY(ARRAY(
        SELECT o.id
        FROM celeriac.tasks o
        WHERE o.worker_id IS NOT NULL
          AND o.state = 'STARTED'
          AND NOT EXISTS (SELECT 1 FROM celeriac.workers w
                          WHERE w.id = o.worker_id AND w.expires_at > now())
        FOR UPDATE OF o SKIP LOCKED
    ))
    RETURNING t.id, t.state, t.queue
)
SELECT count(*) FILTER (WHERE state = 'PENDING') AS requeued,
       count(*) FILTER (WHERE state = 'FAILURE') AS failed,
       (SELECT count(pg_notify($2, r.queue))
        FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'PENDING') r) AS woken,
       (SELECT count(pg_notify($3, r.id::text)) FROM rescued r WHERE r.state = 'FAILURE') AS told
FROM rescued
