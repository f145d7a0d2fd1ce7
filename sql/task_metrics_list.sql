-- task_metrics_list: the cumulative counters and histograms of every task name (/metrics).
-- Returns: name, started, succeeded, failed, retried, revoked, runtime_buckets, runtime_sum,
--          runtime_count, latency_buckets, latency_sum, latency_count.
SELECT name, started, succeeded, failed, retried, revoked,
       runtime_buckets, runtime_sum, runtime_count, latency_buckets, latency_sum, latency_count
FROM celeriac.task_metrics
ORDER BY name
