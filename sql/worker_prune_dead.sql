-- worker_prune_dead: forget workers whose lease expired more than $1 seconds ago and that own no
-- running task any more (their tasks are rescued first).
-- $1 grace seconds float8
-- Returns: rows affected.
DELETE FROM celeriac.workers w
WHERE w.expires_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM celeriac.tasks t WHERE t.worker_id = w.id)
