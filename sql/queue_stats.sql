-- queue_stats: the view celeriac.queue_stats, every queue.
-- Returns: queue, paused, ready, scheduled, running, throttled, oldest_ready_at, oldest_ready_age_s,
-- workers.
SELECT queue, paused, ready, scheduled, running, throttled, oldest_ready_at,
       oldest_ready_age_s::float8 AS oldest_ready_age_s, workers
FROM celeriac.queue_stats
ORDER BY queue
