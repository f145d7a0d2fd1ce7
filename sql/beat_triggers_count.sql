-- beat_triggers_count: how many of the six django tables carry this schema's change trigger
-- (6 when edits are pushed to beat; fewer means beat relies on polling).
-- $1 django schema text   $2 trigger name text
-- Returns: count int8.
SELECT count(*)
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND g.tgname = $2 AND c.relname LIKE 'django\_celery\_beat\_%'
