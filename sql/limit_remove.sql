-- limit_remove: remove the limit of a task name or a queue; its waiting tasks become ready.
-- $1 kind text  $2 target text
-- Returns: removed bool.
SELECT celeriac.limit_remove($1, $2) AS removed
