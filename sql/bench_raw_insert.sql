-- bench_raw_insert: the bare single-row INSERT a single enqueue is compared with.
INSERT INTO celeriac.bench_raw (payload) VALUES ('{"n":1}')
