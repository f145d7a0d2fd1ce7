-- task_get_detail: everything about one task for the API and dashboard: task_get's columns plus
-- the copy a manual retry created (retried_as) and whether a terminate request is pending.
-- $1 id uuid
-- Returns: the row, with its Celery state.
SELECT id, seq, name, queue, state,
       celeriac.celery_state(state, retries, progress_state) AS celery_state,
       priority, args, kwargs, headers, created_at, run_at, expires_at, started_at, finished_at,
       attempt, retries, lost, max_retries, retry_delay, retry_backoff, retry_backoff_max,
       retry_jitter, soft_time_limit, time_limit, ignore_result, worker_id, result, error,
       progress_state, progress, revoked_reason, terminate, retried_as
FROM celeriac.tasks
WHERE id = $1
