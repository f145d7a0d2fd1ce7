-- beat_fires_prune: delete fire-log rows older than $1 seconds, at most $2 per statement.
-- $1 retention float8 (s)   $2 chunk int4
DELETE FROM celeriac.beat_fires
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM celeriac.beat_fires
    WHERE fired_at < now() - make_interval(secs => $1)
    LIMIT $2))
