-- bench_progress: whether queue $1 still has unfinished tasks, through the partial indexes of
-- unfinished rows (each EXISTS stops at the first live row: cheap while the drain is measured).
-- $1 queue text
-- Returns: busy bool.
SELECT EXISTS (SELECT 1 FROM celeriac.tasks WHERE state = 'PENDING' AND queue = $1)
    OR EXISTS (SELECT 1 FROM celeriac.tasks WHERE state IN ('SCHEDULED', 'RETRY') AND queue = $1)
    OR EXISTS (SELECT 1 FROM celeriac.tasks WHERE worker_id IS NOT NULL AND queue = $1)
       AS busy
