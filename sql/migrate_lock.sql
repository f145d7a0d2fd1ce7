-- migrate_lock: serialise concurrent `celeriac migrate` runs (session-level advisory lock; the key
-- is derived from the schema name).
-- $1 schema text
SELECT pg_advisory_lock(hashtext('celeriac_migrate:' || $1))
