-- task_prune_finished: delete up to $2 finished tasks (SUCCESS, FAILURE, REVOKED) that finished
-- more than $1 seconds ago, oldest first, skipping rows someone holds. Called in a loop until it
-- deletes fewer than $2, so no single statement holds many locks or runs for long.
-- $1 retention float8 (s)   $2 chunk int4
-- Returns: rows affected.
DELETE FROM celeriac.tasks
WHERE id = ANY(ARRAY(
    SELECT id
    FROM celeriac.tasks
    WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED')
      AND finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
