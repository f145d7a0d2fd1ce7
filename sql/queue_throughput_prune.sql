-- queue_throughput_prune: forget throughput windows older than $1 seconds (the dashboard shows
-- the last hour). Run by the maintenance leader with its pruning.
-- $1 keep float8 (s)
-- Returns: rows affected.
DELETE FROM celeriac.queue_throughput
WHERE bucket < now() - make_interval(secs => $1)
