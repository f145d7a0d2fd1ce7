-- group_prune_finished: delete up to $2 groups finished more than $1 seconds ago (their member
-- rows go with them), oldest first.
-- $1 retention float8 (s)   $2 chunk int4
-- Returns: rows affected.
DELETE FROM celeriac.groups
WHERE id = ANY(ARRAY(
    SELECT id
    FROM celeriac.groups
    WHERE finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
