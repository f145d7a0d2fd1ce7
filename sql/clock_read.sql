-- clock_read: the database clock, so ages shown by the API (e.g. a worker's last heartbeat) do
-- not depend on the server host's clock.
-- Returns: now timestamptz.
SELECT now() AS now
