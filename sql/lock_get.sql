-- lock_get: the current tenure of named lock $1, if held.
-- $1 name text
-- Returns: token int8, holder text, expires_in float8 (s); no row when free.
SELECT token, holder,
       extract(epoch FROM expires_at - clock_timestamp())::float8 AS expires_in
FROM celeriac.locks
WHERE name = $1 AND expires_at > clock_timestamp()
