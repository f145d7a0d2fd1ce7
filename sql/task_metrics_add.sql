-- task_metrics_add: add a worker's counts since its last flush (deltas) to the cumulative
-- per-task-name counters and histograms, and its finished attempts per queue to the current
-- 10-second throughput window. Called by every worker on each heartbeat and when it stops.
-- Shape: deltas, not per-worker totals, so nothing needs folding when a worker row is pruned and
-- a re-registered worker cannot count twice. Rows are upserted in name order, so two workers
-- flushing the same names lock them in the same order (no deadlock). Histogram arrays are added
-- element-wise; arrays of another length (bucket bounds changed) replace the stored ones.
-- $1 tasks jsonb: [{"name", "started", "succeeded", "failed", "retried", "revoked",
--                   "runtime_buckets": [int8], "runtime_sum", "runtime_count",
--                   "latency_buckets": [int8], "latency_sum", "latency_count"}]
-- $2 queues jsonb: [{"queue", "succeeded", "failed", "retried", "revoked"}]
-- $3 throughput window float8 (s)
-- Returns: names int8, queues int8 (rows upserted).
WITH d AS (
    SELECT *
    FROM jsonb_to_recordset($1::jsonb) AS d(
        name text, started int8, succeeded int8, failed int8, retried int8, revoked int8,
        runtime_buckets int8[], runtime_sum float8, runtime_count int8,
        latency_buckets int8[], latency_sum float8, latency_count int8)
), names AS (
    INSERT INTO celeriac.task_metrics AS m (
        name, started, succeeded, failed, retried, revoked,
        runtime_buckets, runtime_sum, runtime_count, latency_buckets, latency_sum, latency_count)
    SELECT name, started, succeeded, failed, retried, revoked,
           runtime_buckets, runtime_sum, runtime_count, latency_buckets, latency_sum, latency_count
    FROM d
    ORDER BY name
    ON CONFLICT (name) DO UPDATE SET
        started   = m.started + excluded.started,
        succeeded = m.succeeded + excluded.succeeded,
        failed    = m.failed + excluded.failed,
        retried   = m.retried + excluded.retried,
        revoked   = m.revoked + excluded.revoked,
        runtime_buckets = CASE
            WHEN cardinality(m.runtime_buckets) = cardinality(excluded.runtime_buckets)
            THEN ARRAY(SELECT a + b
                       FROM unnest(m.runtime_buckets, excluded.runtime_buckets)
                            WITH ORDINALITY AS u(a, b, i)
                       ORDER BY i)
            ELSE excluded.runtime_buckets END,
        runtime_sum   = m.runtime_sum + excluded.runtime_sum,
        runtime_count = m.runtime_count + excluded.runtime_count,
        latency_buckets = CASE
            WHEN cardinality(m.latency_buckets) = cardinality(excluded.latency_buckets)
            THEN ARRAY(SELECT a + b
                       FROM unnest(m.latency_buckets, excluded.latency_buckets)
                            WITH ORDINALITY AS u(a, b, i)
                       ORDER BY i)
            ELSE excluded.latency_buckets END,
        latency_sum   = m.latency_sum + excluded.latency_sum,
        latency_count = m.latency_count + excluded.latency_count,
        updated_at    = now()
    RETURNING 1
), queues AS (
    INSERT INTO celeriac.queue_throughput AS t (bucket, queue, succeeded, failed, retried, revoked)
    SELECT to_timestamp(floor(extract(epoch FROM now()) / $3) * $3),
           q.queue, q.succeeded, q.failed, q.retried, q.revoked
    FROM jsonb_to_recordset($2::jsonb)
         AS q(queue text, succeeded int8, failed int8, retried int8, revoked int8)
    ORDER BY q.queue
    ON CONFLICT (bucket, queue) DO UPDATE SET
        succeeded = t.succeeded + excluded.succeeded,
        failed    = t.failed + excluded.failed,
        retried   = t.retried + excluded.retried,
        revoked   = t.revoked + excluded.revoked
    RETURNING 1
)
SELECT (SELECT count(*) FROM names) AS names, (SELECT count(*) FROM queues) AS queues
