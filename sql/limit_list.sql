-- limit_list: every limit with its current use (summed over partitions).
-- Returns: one row per limit.
SELECT l.kind, l.target, l.rate_count, l.rate_period, l.concurrency, l.partition_by,
       coalesce((SELECT sum(b.running) FROM celeriac.limit_buckets b WHERE b.limit_name = l.name), 0)::int8
           AS running,
       (SELECT count(*) FROM celeriac.tasks t
        WHERE t.state = 'THROTTLED' AND t.throttle_key LIKE l.name || '|%') AS throttled,
       l.updated_at
FROM celeriac.limits l
ORDER BY l.kind, l.target
