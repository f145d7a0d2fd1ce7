-- bench_analyze: fresh statistics and visibility map for the measured tables.
VACUUM ANALYZE celeriac.tasks, celeriac.bench_raw
