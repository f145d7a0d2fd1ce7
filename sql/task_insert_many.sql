-- task_insert_many: insert tasks given as parallel arrays (element i of every array is task i),
-- in array order, and wake the workers of their queues (one NOTIFY per distinct queue; Postgres
-- delivers it at commit, so a rolled-back enqueue wakes nobody and runs nothing).
-- $1 id uuid[]            $2 name text[]          $3 queue text[]         $4 priority int2[]
-- $5 args jsonb[]         $6 kwargs jsonb[]       $7 headers jsonb[]      $8 countdown float8[] (s)
-- $9 eta timestamptz[]    $10 expires timestamptz[] $11 expires_in float8[] (s)
-- $12 max_retries int4[]  $13 retry_delay float8[] $14 retry_backoff float8[]
-- $15 retry_backoff_max float8[] $16 retry_jitter bool[] $17 soft_time_limit float8[]
-- $18 time_limit float8[] $19 ignore_result bool[]  $20 wakeup channel text
-- $21 unique_key text[]  $22 unique_scope text[]  $23 unique_window float8[]
-- A task whose unique key is live (or repeated earlier in the same batch) is not inserted; the
-- caller looks those up with task_find_unique.
-- Returns: inserted uuid[] (the ids inserted).
WITH input AS (
    SELECT u.*, coalesce(u.eta, now() + make_interval(secs => u.countdown), now()) AS due
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int2[], $5::jsonb[], $6::jsonb[],
                $7::jsonb[], $8::float8[], $9::timestamptz[], $10::timestamptz[], $11::float8[],
                $12::int4[], $13::float8[], $14::float8[], $15::float8[], $16::bool[],
                $17::float8[], $18::float8[], $19::bool[], $21::text[], $22::text[],
                $23::float8[])
         AS u(id, name, queue, priority, args, kwargs, headers, countdown, eta, expires,
              expires_in, max_retries, retry_delay, retry_backoff, retry_backoff_max,
              retry_jitter, soft_time_limit, time_limit, ignore_result, unique_key,
              unique_scope, unique_window)
), inserted AS (
    INSERT INTO celeriac.tasks (
        id, name, queue, state, priority, args, kwargs, headers, run_at, expires_at,
        max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
        soft_time_limit, time_limit, ignore_result, unique_key, unique_scope)
    SELECT id, name, queue, CASE WHEN due > now() THEN 'SCHEDULED' ELSE 'PENDING' END,
           priority, args, kwargs, headers, due,
           coalesce(expires, now() + make_interval(secs => expires_in)),
           max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
           soft_time_limit, time_limit, ignore_result,
           CASE WHEN unique_scope = 'window'
                THEN unique_key || '@' || floor(extract(epoch FROM now()) / unique_window)::bigint
                ELSE unique_key END,
           CASE WHEN unique_key IS NOT NULL THEN unique_scope END
    FROM input
    ON CONFLICT DO NOTHING
    RETURNING id, queue
)
SELECT coalesce(array_agg(id), '{}') AS inserted,
       (SELECT count(pg_notify($20, q.queue)) FROM (SELECT DISTINCT queue FROM inserted) q) AS notified
FROM inserted
