-- task_find_unique: the live task holding unique key $1 (scope $2, window $3 s): what a second
-- enqueue with that key returns. Must run in a new statement after the insert that found the
-- key taken, so it sees the holder committed meanwhile.
-- $1 unique_key text  $2 unique_scope text  $3 unique_window float8
-- Returns: id uuid (no row: the holder finished meanwhile; insert again).
SELECT id
FROM celeriac.tasks
WHERE unique_key = CASE WHEN $2::text = 'window'
                        THEN $1::text || '@' || floor(extract(epoch FROM now()) / $3::float8)::bigint
                        ELSE $1::text END
  AND ((unique_scope IN ('queued', 'active')
        AND (state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY')
             OR (state = 'STARTED' AND unique_scope = 'active')))
       OR unique_scope = 'window')
LIMIT 1
