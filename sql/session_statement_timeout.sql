-- session_statement_timeout: limit the statements of the current transaction to $1 (e.g. '10s'),
-- so a heavy filter on the API cannot hold a connection for long.
-- $1 timeout text
-- Returns: the setting.
SELECT set_config('statement_timeout', $1, true)
