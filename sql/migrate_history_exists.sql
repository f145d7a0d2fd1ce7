-- migrate_history_exists: whether the migration history table exists in our schema.
-- $1 schema text
-- Returns: exists bool.
SELECT to_regclass(quote_ident($1) || '.refinery_schema_history') IS NOT NULL AS exists
