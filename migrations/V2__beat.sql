-- Celeriac beat: the fire log (exactly once per slot), beat instances and their status, and the
-- trigger function that tells beat about edits of django-celery-beat's tables.
--
-- The django_celery_beat_* tables themselves are NOT created here: they belong to Django's
-- migrations. `celeriac migrate` creates them (exactly as Django would, see
-- sql/beat_tables_create.sql) only when they do not exist, in the configured schema (default
-- public), and then installs the change triggers (sql/beat_triggers_install.sql).

-- ─── fire log ───────────────────────────────────────────────────────────────────────────────────
-- One row per send by beat, written in the same transaction as the enqueue and the write-back of
-- last_run_at. `anchor` is what the slot was computed from (last_run_at, or date_changed when it
-- was NULL): two sends from the same anchor would be a duplicate, so the primary key makes a
-- second beat's attempt fail even if every other guard failed. Pruned after 7 days by the leader.
CREATE TABLE celeriac.beat_fires (
    periodic_task_id integer          NOT NULL,
    anchor           timestamptz      NOT NULL,
    name             text             NOT NULL,
    -- The instant the task was due (cron slot, last_run_at + every, clocked time, solar event).
    slot             timestamptz      NOT NULL,
    fired_at         timestamptz      NOT NULL DEFAULT now(),
    -- fired_at - slot, seconds.
    lag_s            double precision NOT NULL,
    task_id          uuid             NOT NULL,
    -- The slot was missed while no beat ran (catch-up: one run, not one per missed slot).
    catch_up         boolean          NOT NULL,
    -- The beat lease token of the sender.
    leader_token     bigint,
    PRIMARY KEY (periodic_task_id, anchor)
);
CREATE INDEX beat_fires_fired_at ON celeriac.beat_fires (fired_at);

-- ─── beat instances ─────────────────────────────────────────────────────────────────────────────
-- One row per running `celeriac beat` (or `dev`), refreshed every few seconds; id is the holder
-- id it competes for the `beat` lease with (celeriac.leases).
CREATE TABLE celeriac.beat_instances (
    id            uuid        PRIMARY KEY,
    hostname      text        NOT NULL,
    pid           integer     NOT NULL,
    django_schema text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    seen_at       timestamptz NOT NULL DEFAULT now(),
    is_leader     boolean     NOT NULL DEFAULT false,
    -- Leader only: when its loop last ran, what it has loaded, and its next fire.
    last_tick_at  timestamptz,
    schedules     integer     NOT NULL DEFAULT 0,
    bad_rows      integer     NOT NULL DEFAULT 0,
    next_fire_at  timestamptz
);

-- What a dashboard or the metrics endpoint reads: one row, the leader and its recent lag
-- (catch-up sends excluded).
CREATE VIEW celeriac.beat_status AS
SELECT l.holder                                        AS leader_id,
       coalesce(l.expires_at > now(), false)           AS leader_alive,
       l.token                                         AS leader_token,
       l.acquired_at                                   AS leader_since,
       i.hostname                                      AS leader_hostname,
       i.pid                                           AS leader_pid,
       i.last_tick_at,
       extract(epoch FROM now() - i.last_tick_at)::float8 AS tick_age_s,
       i.schedules,
       i.bad_rows,
       i.next_fire_at,
       (SELECT count(*) FROM celeriac.beat_instances b
         WHERE b.seen_at > now() - interval '30 seconds') AS instances,
       f.fires_5m,
       f.lag_p50_s,
       f.lag_p99_s,
       f.lag_max_s
FROM (SELECT 1) AS one
LEFT JOIN celeriac.leases l ON l.name = 'beat'
LEFT JOIN celeriac.beat_instances i ON i.id = l.holder
CROSS JOIN LATERAL (
    SELECT count(*)                                               AS fires_5m,
           percentile_cont(0.5)  WITHIN GROUP (ORDER BY x.lag_s)  AS lag_p50_s,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY x.lag_s)  AS lag_p99_s,
           max(x.lag_s)                                           AS lag_max_s
    FROM celeriac.beat_fires x
    WHERE x.fired_at > now() - interval '5 minutes' AND NOT x.catch_up
) f;

-- ─── change detection ───────────────────────────────────────────────────────────────────────────
-- Statement-level trigger function on the django_celery_beat_* tables: any INSERT, UPDATE,
-- DELETE or TRUNCATE — a Django save, an admin bulk action, QuerySet.update(), raw SQL — sends
-- NOTIFY `<schema>.beat` at commit. Beat's own write-backs mark their transaction
-- (set_config('<schema>.beat_writer', 'on', true)) and do not notify themselves.
CREATE FUNCTION celeriac.beat_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('celeriac.beat_writer', true), '') <> 'on' THEN
        PERFORM pg_notify('celeriac.beat', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;
