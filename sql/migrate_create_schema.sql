-- migrate_create_schema: the schema that holds everything of Celeriac's, and its history table.
CREATE SCHEMA IF NOT EXISTS "celeriac"
