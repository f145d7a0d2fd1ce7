-- worker_list: every registered worker with the number of tasks it runs; alive = lease valid.
-- Returns: one row per worker.
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.heartbeat_at, w.expires_at, w.stopping, w.expires_at > now() AS alive, w.info,
       (SELECT count(*) FROM celeriac.tasks t WHERE t.worker_id = w.id)
           AS running
FROM celeriac.workers w
ORDER BY w.started_at
