-- limit_set: set (or replace) the rate and/or concurrency limit of a task name or a queue
-- (celeriac.limit_set): every worker honours it from its next claim.
-- $1 kind text ('task' | 'queue')  $2 target text  $3 rate text ('10/m', NULL)
-- $4 concurrency int4 (NULL)  $5 partition_by text (a kwarg name, NULL)
SELECT celeriac.limit_set($1, $2, $3, $4, $5)
