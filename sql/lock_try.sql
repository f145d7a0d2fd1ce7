-- lock_try: take named lock $1 for $2 seconds if it is free or expired (celeriac.lock_try).
-- $1 name text  $2 ttl float8  $3 holder text (for display)
-- Returns: token int8 (NULL: held by someone else).
SELECT celeriac.lock_try($1, $2, $3) AS token
