-- task_hand_back: at shutdown, give the still-running tasks of worker $1 back to their queues
-- (PENDING, run again by another worker; the retry count is not charged).
-- $1 worker id uuid   $2 wakeup channel text
-- Returns: handed_back bigint.
WITH back AS (
    UPDATE celeriac.tasks
    SET state = 'PENDING', worker_id = NULL, terminate = false
    WHERE worker_id = $1 AND state = 'STARTED'
    RETURNING queue
)
SELECT count(*) AS handed_back,
       (SELECT count(pg_notify($2, b.queue)) FROM (SELECT DISTINCT queue FROM back) b) AS notified
FROM back
