-- task_claim: claim up to $2 ready tasks for worker $3 from queues $1 (taken in the given order,
-- highest priority first and FIFO within a priority), skipping paused queues and rows locked by
-- other claimers, through celeriac.claim (migrations V6). Without limits that is one UPDATE:
-- pick with FOR UPDATE SKIP LOCKED, then mark STARTED with a new attempt number (the fencing
-- token every later write of this attempt must present). With limits it also checks each picked
-- task's rate and concurrency buckets; tasks held back wait as THROTTLED or SCHEDULED and the
-- tasks behind them are picked instead.
-- Tasks past their `expires_at` are not started: they end REVOKED ('expired') here and are
-- returned with that state so the caller can report them.
-- Shape (inside the function): the pick is an InitPlan (ARRAY(...)) and the update probes the
-- primary key with it. Joined as a CTE instead, a generic plan assumes LIMIT $2 keeps 10 % of
-- the table and hash-joins the whole table on every claim.
-- $1 queues text[]   $2 limit int4   $3 worker id uuid
-- Returns: the claimed rows.
SELECT id, name, queue, state, args, kwargs, headers, attempt, retries, max_retries,
       retry_delay, retry_backoff, retry_backoff_max, retry_jitter, soft_time_limit, time_limit,
       ignore_result, created_at, run_at, started_at
FROM celeriac.claim($1::text[], $2::int4, $3::uuid)
