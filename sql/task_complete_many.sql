-- task_complete_many: record the outcomes of attempts, as parallel arrays, in one statement.
-- An outcome applies only while the row is still STARTED with the same attempt number: a late
-- write from an attempt that was rescued, handed back or re-claimed changes nothing.
-- New state SUCCESS/FAILURE/REVOKED finishes the task; RETRY (run again in retry_in seconds) or
-- PENDING (run again now) counts one more retry. Waiters of finished tasks are told on
-- `done_channel` (ids comma-separated, ≤ 200 per notification), workers of re-queued ones on
-- `wakeup_channel`.
-- Shape: the LATERAL step locks each target through the primary key (one probe per outcome,
-- whatever the statistics say about states), then the update goes by ctid. Queue tables always
-- have stale statistics; a plain UPDATE … FROM unnest(…) was once planned as a nested loop over
-- every running row.
-- $1 id uuid[]  $2 attempt int4[]  $3 state text[]  $4 result jsonb[]  $5 error jsonb[]
-- $6 retry_in float8[] (s)  $7 revoked_reason text[]  $8 done_channel text  $9 wakeup_channel text
-- Returns: completed uuid[] (the ids whose outcome was recorded).
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::jsonb[],
                         $6::float8[], $7::text[])
             AS u(id, attempt, state, result, error, retry_in, revoked_reason)
), target AS MATERIALIZED (
    SELECT x.tid, u.*
    FROM input u
    CROSS JOIN LATERAL (
        SELECT t.ctid AS tid
        FROM celeriac.tasks t
        WHERE t.id = u.id AND t.attempt = u.attempt AND t.state = 'STARTED'
        FOR UPDATE
    ) x
), done AS (
    UPDATE celeriac.tasks t SET
        state          = g.state,
        result         = g.result,
        error          = g.error,
        revoked_reason = g.revoked_reason,
        retries        = CASE WHEN g.state IN ('RETRY', 'PENDING') THEN t.retries + 1 ELSE t.retries END,
        run_at         = CASE WHEN g.state IN ('RETRY', 'PENDING')
                              THEN now() + make_interval(secs => coalesce(g.retry_in, 0))
                              ELSE t.run_at END,
        finished_at    = CASE WHEN g.state IN ('SUCCESS', 'FAILURE', 'REVOKED') THEN now() END,
        worker_id      = NULL,
        terminate      = false
    FROM target g
    WHERE t.ctid = g.tid
    RETURNING t.id, t.state, t.queue
)
SELECT coalesce((SELECT array_agg(id) FROM done), '{}') AS completed,
       (SELECT count(pg_notify($8, n.ids))
        FROM (SELECT string_agg(c.id::text, ',') AS ids
              FROM (SELECT id, (row_number() OVER () - 1) / 200 AS chunk
                    FROM done WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED')) c
              GROUP BY c.chunk) n) AS done_notified,
       (SELECT count(pg_notify($9, w.queue))
        FROM (SELECT DISTINCT queue FROM done WHERE state IN ('PENDING', 'RETRY')) w) AS woken
