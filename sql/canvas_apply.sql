-- canvas_apply: apply a workflow (chain / group / chord of signatures) through the SQL API's own
-- function, so Rust, SQL, HTTP and Python share one implementation.
-- $1 canvas jsonb
-- Returns: applied jsonb ({"id": result id, "root_id": ..., "canvas": frozen canvas with ids}).
SELECT celeriac.apply($1) AS applied
