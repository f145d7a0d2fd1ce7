-- task_next_due: the earliest run_at among waiting tasks (SCHEDULED or RETRY) of queues $1, so an
-- idle worker can sleep exactly until then. One index probe per queue.
-- $1 queues text[]
-- Returns: next_due timestamptz (NULL when nothing waits), now timestamptz (the database clock).
SELECT min(w.run_at) AS next_due, now() AS now
FROM unnest($1::text[]) AS q(name)
CROSS JOIN LATERAL (
    SELECT t.run_at
    FROM celeriac.tasks t
    WHERE t.state IN ('SCHEDULED', 'RETRY') AND t.queue = q.name
    ORDER BY t.run_at
    LIMIT 1
) w
