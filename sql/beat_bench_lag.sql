-- beat_bench_lag: (bench only) sends of one slot: how many, lag (fired_at - slot) p50/p99/max
-- in seconds, and the first and last send time.
-- $1 slot timestamptz
SELECT count(*),
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s), 0),
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_s), 0),
       coalesce(max(lag_s), 0)
FROM celeriac.beat_fires WHERE slot = $1
