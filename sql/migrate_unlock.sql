-- migrate_unlock: release migrate_lock.
-- $1 schema text
SELECT pg_advisory_unlock(hashtext('celeriac_migrate:' || $1))
