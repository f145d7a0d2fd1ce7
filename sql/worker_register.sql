-- worker_register: announce a worker (or re-announce it after its lease lapsed), and make sure
-- each of its queues has a settings row so it shows in queue_stats while empty.
-- $1 id uuid  $2 hostname text  $3 pid int4  $4 queues text[]  $5 concurrency int4
-- $6 version text  $7 lease seconds float8  $8 info jsonb
-- Returns: nothing.
WITH q AS (
    INSERT INTO celeriac.queues (name)
    SELECT DISTINCT unnest($4::text[])
    ON CONFLICT (name) DO NOTHING
)
INSERT INTO celeriac.workers (id, hostname, pid, queues, concurrency, version, expires_at, info)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), expires_at = excluded.expires_at, stopping = false
