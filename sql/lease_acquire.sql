-- lease_acquire: take or renew the named lease $1 for holder $2 for $3 seconds. Succeeds when the
-- lease is free, expired, or already ours. The token increases whenever the holder changes.
-- $1 name text   $2 holder uuid   $3 ttl seconds float8
-- Returns: token int8 (no row: someone else holds it).
INSERT INTO celeriac.leases AS l (name, holder, token, acquired_at, expires_at)
VALUES ($1, $2, 1, now(), now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET
    holder      = excluded.holder,
    token       = CASE WHEN l.holder = excluded.holder THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE now() END,
    expires_at  = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at <= now()
RETURNING l.token
