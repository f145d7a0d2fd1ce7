-- task_insert: insert one task and wake the workers of its queue (the NOTIFY is delivered at
-- commit, so a rolled-back enqueue wakes nobody and runs nothing). task_insert_many does the
-- same for many tasks; this single-row form plans in a fraction of the time.
-- With a unique key ($21, scope $22, window $23 s), a live task with the same key makes this
-- insert nothing (the unique indexes decide, so concurrent enqueues cannot both insert); the
-- caller then looks the live task up with task_find_unique, in a new statement.
-- $1 id uuid  $2 name text  $3 queue text  $4 priority int2  $5 args jsonb  $6 kwargs jsonb
-- $7 headers jsonb  $8 countdown float8 (s)  $9 eta timestamptz  $10 expires timestamptz
-- $11 expires_in float8 (s)  $12 max_retries int4  $13 retry_delay float8
-- $14 retry_backoff float8  $15 retry_backoff_max float8  $16 retry_jitter bool
-- $17 soft_time_limit float8  $18 time_limit float8  $19 ignore_result bool
-- $20 wakeup channel text  $21 unique_key text  $22 unique_scope text  $23 unique_window float8
-- Returns: id (no row: not inserted).
WITH inserted AS (
    INSERT INTO celeriac.tasks (
        id, name, queue, state, priority, args, kwargs, headers, run_at, expires_at,
        max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
        soft_time_limit, time_limit, ignore_result, unique_key, unique_scope)
    SELECT $1, $2, $3, CASE WHEN d.due > now() THEN 'SCHEDULED' ELSE 'PENDING' END,
           $4, $5, $6, $7, d.due, coalesce($10, now() + make_interval(secs => $11)),
           $12, $13, $14, $15, $16, $17, $18, $19,
           CASE WHEN $22::text = 'window'
                THEN $21::text || '@' || floor(extract(epoch FROM now()) / $23::float8)::bigint
                ELSE $21::text END,
           CASE WHEN $21::text IS NOT NULL THEN $22::text END
    FROM (SELECT coalesce($9::timestamptz, now() + make_interval(secs => $8::float8), now()) AS due) d
    ON CONFLICT DO NOTHING
    RETURNING id, queue
)
SELECT id, pg_notify($20, queue) IS NULL AS notified FROM inserted
