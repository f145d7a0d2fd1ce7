-- bench_raw_fill: refill the scratch table with $1 rows.
-- $1 rows int4
WITH gone AS (DELETE FROM celeriac.bench_raw)
INSERT INTO celeriac.bench_raw (payload) SELECT '{"n":1}' FROM generate_series(1, $1)
