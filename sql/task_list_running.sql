-- task_list_running: running tasks (all workers, or worker $1 when not NULL), oldest first.
-- $1 worker id uuid (NULL = all)   $2 limit int8
-- Returns: id, name, queue, worker_id, attempt, retries, started_at, progress_state, terminate.
SELECT id, name, queue, worker_id, attempt, retries, started_at, progress_state, terminate
FROM celeriac.tasks
WHERE worker_id IS NOT NULL AND ($1::uuid IS NULL OR worker_id = $1)
ORDER BY started_at
LIMIT $2
