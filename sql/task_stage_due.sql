-- task_stage_due: make waiting tasks (SCHEDULED countdown/ETA, RETRY backoff) of queues $1 whose
-- run_at has come ready (PENDING), at most $2 per call, and wake the workers of those queues.
-- $1 queues text[]   $2 limit int4   $3 wakeup channel text
-- Returns: staged bigint.
WITH staged AS (
    UPDATE celeriac.tasks t SET state = 'PENDING'
    WHERE t.id = ANY(ARRAY(
        SELECT id
        FROM celeriac.tasks
        WHERE state IN ('SCHEDULED', 'RETRY') AND queue = ANY($1::text[]) AND run_at <= now()
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING t.queue
)
SELECT count(*) AS staged,
       (SELECT count(pg_notify($3, s.queue)) FROM (SELECT DISTINCT queue FROM staged) s) AS notified
FROM staged
