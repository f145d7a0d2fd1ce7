-- migrate_applied: the migration versions applied to this schema (NULL table: none).
-- Returns: version int4 (one row per applied migration).
SELECT version FROM celeriac.refinery_schema_history ORDER BY version
