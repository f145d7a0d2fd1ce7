-- bench_window: for the finished tasks of queue $1, how many, and the window from the first
-- start to the last finish (database clock).
-- $1 queue text
-- Returns: finished int8, first_start timestamptz, last_finish timestamptz.
SELECT count(*) AS finished, min(started_at) AS first_start, max(finished_at) AS last_finish
FROM celeriac.tasks
WHERE queue = $1 AND state IN ('SUCCESS', 'FAILURE', 'REVOKED')
