-- task_revoke: revoke a task through the SQL API's own function (one implementation).
-- $1 id uuid   $2 terminate bool
-- Returns: celery_state text after the call (NULL: no such task).
SELECT celeriac.revoke($1, $2) AS celery_state
