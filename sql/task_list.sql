-- task_list: a page of tasks, newest first (created_at, then seq: the enqueue order within a
-- transaction), with keyset pagination: the next page starts strictly after the last row of
-- this one, so tasks inserted meanwhile (newer) never shift or repeat a page.
-- Filters are parameters: $2/$3 NULL mean any name/queue.
-- Shape: one branch per state, each reading its own range of tasks_list (state, created_at,
-- seq) backwards, merged (Merge Append) and cut to the page: `since` and the cursor are index
-- ranges, so a page reads about $7 entries per branch whatever the size of the history or of
-- the backlog. STARTED rows go through tasks_running (worker_id is set exactly while STARTED, see
-- the CHECK in V1) and are sorted: there are at most as many as worker slots. A state not asked
-- for in $1 turns its branch off before it runs (a one-time filter), even in a generic plan.
-- Name and queue filters are checked on the rows read: a name that matches little of the
-- history reads far into it (bounded by `since` and the caller's statement timeout).
-- $1 states text[] (state column values)   $2 name text   $3 queue text
-- $4 since timestamptz (created at or after)   $5 cursor created_at timestamptz
-- $6 cursor seq int8 (first page: a far-future instant and the largest int8)   $7 limit int8
-- Returns: id, seq, name, queue, state, celery_state, priority, created_at, run_at, started_at,
--          finished_at, attempt, retries, worker_id, error_type, error_message, revoked_reason.
SELECT p.*
FROM (
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'SUCCESS' AND 'SUCCESS' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'FAILURE' AND 'FAILURE' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'REVOKED' AND 'REVOKED' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'PENDING' AND 'PENDING' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'THROTTLED' AND 'THROTTLED' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'SCHEDULED' AND 'SCHEDULED' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.state = 'RETRY' AND 'RETRY' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
    UNION ALL
    (SELECT t.id, t.seq, t.name, t.queue, t.state,
           celeriac.celery_state(t.state, t.retries, t.progress_state) AS celery_state,
           t.priority, t.created_at, t.run_at, t.started_at, t.finished_at, t.attempt,
           t.retries, t.worker_id, t.error->>'type' AS error_type,
           left(t.error->>'message', 300) AS error_message, t.revoked_reason
    FROM celeriac.tasks t
    WHERE t.worker_id IS NOT NULL AND 'STARTED' = ANY($1)
      AND ($2::text IS NULL OR t.name = $2) AND ($3::text IS NULL OR t.queue = $3)
      AND t.created_at >= $4 AND (t.created_at, t.seq) < ($5, $6)
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT $7)
) p
ORDER BY p.created_at DESC, p.seq DESC
LIMIT $7
