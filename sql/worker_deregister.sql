-- worker_deregister: a worker leaves cleanly (after handing its tasks back).
-- $1 id uuid
DELETE FROM celeriac.workers WHERE id = $1
