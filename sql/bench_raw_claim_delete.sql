-- bench_raw_claim_delete: pglimit's claim_delete_100, the raw ceiling of a SKIP LOCKED queue.
DELETE FROM celeriac.bench_raw
WHERE id IN (SELECT id FROM celeriac.bench_raw ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 100)
