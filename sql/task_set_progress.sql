-- task_set_progress: a running attempt reports a custom state (e.g. PROGRESS) with JSON meta.
-- Ignored unless attempt $2 is still the task's current, running attempt.
-- $1 id uuid   $2 attempt int4   $3 state text   $4 meta jsonb
-- Returns: rows affected (0 or 1).
UPDATE celeriac.tasks
SET progress_state = $3, progress = $4
WHERE id = $1 AND attempt = $2 AND state = 'STARTED'
