-- beat_bench_visible: (bench only) tasks sent to queue bench_beat so far (committed).
SELECT count(*) FROM celeriac.tasks WHERE queue = 'bench_beat'
