-- queue_throughput_rates: finished attempts per queue over the last minute: the six complete
-- 10-second windows before the current one (so the newest data may lag by one heartbeat).
-- $1 window float8 (s, the width workers write with)
-- Returns: queue, succeeded, failed, retried, revoked, seconds (the span counted).
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / $1) * $1) AS current
)
SELECT t.queue,
       sum(t.succeeded)::int8 AS succeeded, sum(t.failed)::int8 AS failed,
       sum(t.retried)::int8 AS retried, sum(t.revoked)::int8 AS revoked,
       60.0::float8 AS seconds
FROM celeriac.queue_throughput t, w
WHERE t.bucket >= w.current - interval '60 seconds' AND t.bucket < w.current
GROUP BY t.queue
ORDER BY t.queue
