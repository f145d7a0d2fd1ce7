-- queue_throughput_series: finished attempts per minute over the last $1 minutes (the current,
-- partial minute last), of queue $2 or of all queues; minutes without any are zeros.
-- Reads the 10-second windows workers add to on each heartbeat: a few hundred rows per queue
-- and hour, whatever the size of the tasks table.
-- $1 minutes int4   $2 queue text (NULL: all)
-- Returns: minute, succeeded, failed, retried, revoked (one row per minute, oldest first).
WITH m AS (
    SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                           date_trunc('minute', now()), interval '1 minute') AS minute
), t AS (
    SELECT date_trunc('minute', bucket) AS minute,
           sum(succeeded) AS succeeded, sum(failed) AS failed,
           sum(retried) AS retried, sum(revoked) AS revoked
    FROM celeriac.queue_throughput
    WHERE bucket >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
      AND ($2::text IS NULL OR queue = $2)
    GROUP BY 1
)
SELECT m.minute,
       coalesce(t.succeeded, 0)::int8 AS succeeded, coalesce(t.failed, 0)::int8 AS failed,
       coalesce(t.retried, 0)::int8 AS retried, coalesce(t.revoked, 0)::int8 AS revoked
FROM m LEFT JOIN t ON t.minute = m.minute
ORDER BY m.minute
