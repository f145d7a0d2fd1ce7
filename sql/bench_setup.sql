-- bench_setup: a scratch table in the (bench) schema for raw-Postgres reference measures,
-- shaped like shared/bench/pglimit.sh's.
DROP TABLE IF EXISTS celeriac.bench_raw;
CREATE TABLE celeriac.bench_raw (
    id bigserial PRIMARY KEY,
    queue text NOT NULL DEFAULT 'default',
    payload jsonb NOT NULL DEFAULT '{}',
    run_at timestamptz NOT NULL DEFAULT now()
);
