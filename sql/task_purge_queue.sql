-- task_purge_queue: revoke (reason 'purged') up to $2 waiting tasks of queue $1: ready,
-- scheduled, throttled and retrying ones; running tasks are left alone. Waiters are told.
-- Rows stay until pruned, so a purge is visible afterwards. Called in a loop.
-- $1 queue text   $2 chunk int4   $3 done channel text
-- Returns: purged bigint.
WITH purged AS (
    UPDATE celeriac.tasks t
    SET state = 'REVOKED', revoked_reason = 'purged', finished_at = now()
    WHERE t.id = ANY(ARRAY(
        SELECT id
        FROM celeriac.tasks
        WHERE queue = $1 AND state IN ('PENDING', 'SCHEDULED', 'THROTTLED', 'RETRY')
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING t.id
)
SELECT count(*) AS purged,
       (SELECT count(pg_notify($3, n.ids))
        FROM (SELECT string_agg(c.id::text, ',') AS ids
              FROM (SELECT id, (row_number() OVER () - 1) / 200 AS chunk FROM purged) c
              GROUP BY c.chunk) n) AS told
FROM purged
