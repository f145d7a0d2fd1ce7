-- worker_heartbeat: extend worker $1's lease by $2 seconds. A worker whose row is gone (it was
-- presumed dead and pruned) gets no row back and must register again.
-- $1 id uuid   $2 lease seconds float8   $3 stopping bool
-- Returns: lapsed bool (true when the lease had already expired: its tasks may have been rescued).
WITH before AS (
    SELECT expires_at FROM celeriac.workers WHERE id = $1 FOR UPDATE
)
UPDATE celeriac.workers w
SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $2), stopping = $3
FROM before
WHERE w.id = $1
RETURNING before.expires_at <= now() AS lapsed
