-- bench_teardown: drop the bench schema and everything in it.
DROP SCHEMA IF EXISTS "celeriac" CASCADE
