-- task_retry: run finished task $1 again as a new task $2 (a manual retry from the API or the
-- dashboard). Only FAILURE and REVOKED tasks that were not retried before qualify. The copy has
-- the same name, arguments, headers (plus "retry_of": $1), queue, priority and retry/time-limit
-- options, runs now (no countdown, no expiry: the original's may have passed) and starts with
-- zero retries. The original keeps its outcome and records the copy in retried_as, in the same
-- statement, so two concurrent retries cannot both create a copy (the second finds retried_as
-- set once it gets the row lock).
-- $1 original id uuid   $2 new id uuid   $3 wakeup channel text
-- Returns: one row when the task exists: state (before), retried_as (before), new_id (NULL when
-- nothing was created).
WITH cur AS (
    SELECT id, state, retried_as FROM celeriac.tasks WHERE id = $1
), orig AS (
    UPDATE celeriac.tasks t SET retried_as = $2
    WHERE t.id = $1 AND t.state IN ('FAILURE', 'REVOKED') AND t.retried_as IS NULL
    RETURNING t.*
), copy AS (
    INSERT INTO celeriac.tasks (
        id, name, queue, state, priority, args, kwargs, headers, max_retries, retry_delay,
        retry_backoff, retry_backoff_max, retry_jitter, soft_time_limit, time_limit,
        ignore_result)
    SELECT $2, o.name, o.queue, 'PENDING', o.priority, o.args, o.kwargs,
           o.headers || jsonb_build_object('retry_of', o.id::text), o.max_retries, o.retry_delay,
           o.retry_backoff, o.retry_backoff_max, o.retry_jitter, o.soft_time_limit, o.time_limit,
           o.ignore_result
    FROM orig o
    RETURNING id, queue
), woken AS (
    SELECT pg_notify($3, queue) FROM copy
)
SELECT cur.state, cur.retried_as, (SELECT id FROM copy) AS new_id,
       (SELECT count(*) FROM woken) AS woken
FROM cur
