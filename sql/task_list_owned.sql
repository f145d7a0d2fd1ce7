-- task_list_owned: the attempts worker $1 currently owns (STARTED with its id), with their
-- terminate flags. The worker compares them with what it runs: a task it runs but no longer owns
-- was rescued from it (its heartbeat lapsed) and is cancelled; terminate = true is a revoke.
-- $1 worker id uuid
-- Returns: id uuid, attempt int4, terminate bool.
SELECT id, attempt, terminate
FROM celeriac.tasks
WHERE worker_id = $1 AND state = 'STARTED'
