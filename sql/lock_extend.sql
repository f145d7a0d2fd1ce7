-- lock_extend: extend named lock $1 held with token $2 to $3 seconds from now (false: lost).
-- $1 name text  $2 token int8  $3 ttl float8
-- Returns: extended bool.
SELECT celeriac.lock_extend($1, $2, $3) AS extended
