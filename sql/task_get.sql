-- task_get: everything about one task.
-- $1 id uuid
-- Returns: the row, with its Celery state.
SELECT id, name, queue, state, celeriac.celery_state(state, retries, progress_state) AS celery_state,
       priority, args, kwargs, headers, created_at, run_at, expires_at, started_at, finished_at,
       attempt, retries, lost, max_retries, ignore_result, worker_id, result, error,
       progress_state, progress, revoked_reason
FROM celeriac.tasks
WHERE id = $1
