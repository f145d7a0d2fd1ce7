-- Rate limits and concurrency caps that hold across every worker.
-- (`celeriac.` means our schema; see V1.)
--
-- A limit applies to a task name or to a queue, optionally per partition (the value of one
-- kwarg, e.g. per customer). Buckets hold its state per partition: tokens for the rate (a token
-- bucket of capacity rate_count, refilled at rate_count / rate_period per second, which may go
-- into debt when a task prepays a future token) and the number of running tasks for the cap.
--
-- Claims check the limits of what they pick (celeriac.claim). A task over a cap waits as
-- THROTTLED until a running task of its bucket stops (the trigger below releases one); a task
-- over a rate prepays the next free token and waits as SCHEDULED until exactly then. So a
-- limited task never blocks the queue behind it, and nobody polls.

ALTER TABLE celeriac.tasks DROP CONSTRAINT tasks_state_valid;
ALTER TABLE celeriac.tasks ADD CONSTRAINT tasks_state_valid CHECK (state IN
    ('SCHEDULED', 'PENDING', 'THROTTLED', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED'));

ALTER TABLE celeriac.tasks
    -- Limit tokens this task holds: 'c:<bucket>' a running slot (while STARTED), 'r:<bucket>' a
    -- prepaid rate token (until its next claim). NULL for unlimited tasks.
    ADD COLUMN limit_held   text[],
    -- The bucket a THROTTLED task waits for.
    ADD COLUMN throttle_key text;

CREATE INDEX tasks_throttled ON celeriac.tasks (throttle_key, priority DESC, run_at, seq)
    WHERE state = 'THROTTLED';

-- Celery's view: a throttled task is still PENDING.
CREATE OR REPLACE FUNCTION celeriac.celery_state(state text, retries integer, progress_state text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN state IN ('SCHEDULED', 'PENDING', 'THROTTLED') AND retries > 0 THEN 'RETRY'
        WHEN state IN ('SCHEDULED', 'THROTTLED') THEN 'PENDING'
        WHEN state = 'STARTED' AND progress_state IS NOT NULL THEN progress_state
        ELSE state
    END
$$;

CREATE TABLE celeriac.limits (
    -- 'task:<name>' or 'queue:<name>'.
    name         text             PRIMARY KEY,
    kind         text             NOT NULL CHECK (kind IN ('task', 'queue')),
    target       text             NOT NULL CHECK (target <> ''),
    -- At most rate_count starts per rate_period seconds (bursts up to rate_count).
    rate_count   integer          CHECK (rate_count > 0),
    rate_period  double precision CHECK (rate_period > 0),
    -- At most this many running at once.
    concurrency  integer          CHECK (concurrency > 0),
    -- Separate buckets per value of this kwarg (NULL: one bucket).
    partition_by text,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT limits_rate_complete CHECK ((rate_count IS NULL) = (rate_period IS NULL)),
    CONSTRAINT limits_something CHECK (rate_count IS NOT NULL OR concurrency IS NOT NULL),
    CONSTRAINT limits_name CHECK (name = kind || ':' || target)
);

CREATE TABLE celeriac.limit_buckets (
    -- 'task:<name>|<partition>'.
    key          text             PRIMARY KEY,
    limit_name   text             NOT NULL REFERENCES celeriac.limits (name) ON DELETE CASCADE,
    tokens       double precision NOT NULL,
    refreshed_at timestamptz      NOT NULL,
    running      integer          NOT NULL DEFAULT 0
);
CREATE INDEX limit_buckets_limit ON celeriac.limit_buckets (limit_name);

-- Parse Celery's rate syntax: '10/s', '100/m', '1000/h', or '5' (per second).
CREATE FUNCTION celeriac.parse_rate(rate text, OUT rate_count integer, OUT rate_period double precision)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    m text[] := regexp_match(btrim(rate), '^([0-9]+)\s*(?:/\s*([smh]))?$');
BEGIN
    IF m IS NULL OR m[1]::bigint <= 0 OR m[1]::bigint > 2147483647 THEN
        RAISE EXCEPTION 'rate %: expected N/s, N/m or N/h with N > 0 (like Celery''s rate_limit)', quote_literal(rate)
            USING ERRCODE = '22023';
    END IF;
    rate_count := m[1]::integer;
    rate_period := CASE coalesce(m[2], 's') WHEN 's' THEN 1 WHEN 'm' THEN 60 ELSE 3600 END;
END
$$;

-- Set (or replace) the limit of a task name or queue; waiting tasks of it are re-examined.
--   SELECT celeriac.limit_set('task', 'report.build', rate => '10/m', concurrency => 3,
--                             partition_by => 'customer_id');
CREATE FUNCTION celeriac.limit_set(kind text, target text, rate text DEFAULT NULL,
                                   concurrency integer DEFAULT NULL, partition_by text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rc integer;
    rp double precision;
    nm text := kind || ':' || target;
BEGIN
    IF kind NOT IN ('task', 'queue') THEN
        RAISE EXCEPTION 'limit kind must be task or queue, got %', quote_literal(kind) USING ERRCODE = '22023';
    END IF;
    IF rate IS NULL AND concurrency IS NULL THEN
        RAISE EXCEPTION 'a limit needs a rate, a concurrency, or both' USING ERRCODE = '22023';
    END IF;
    IF concurrency IS NOT NULL AND concurrency <= 0 THEN
        RAISE EXCEPTION 'concurrency must be at least 1, got %', concurrency USING ERRCODE = '22023';
    END IF;
    IF rate IS NOT NULL THEN
        SELECT p.rate_count, p.rate_period INTO rc, rp FROM celeriac.parse_rate(rate) p;
    END IF;
    INSERT INTO celeriac.limits AS l (name, kind, target, rate_count, rate_period, concurrency, partition_by)
    VALUES (nm, kind, target, rc, rp, concurrency, nullif(partition_by, ''))
    ON CONFLICT (name) DO UPDATE SET
        rate_count = excluded.rate_count, rate_period = excluded.rate_period,
        concurrency = excluded.concurrency, partition_by = excluded.partition_by, updated_at = now();
    -- Buckets restart from the new definition (running counts are kept).
    UPDATE celeriac.limit_buckets b SET tokens = least(b.tokens, coalesce(rc, 0))

    WHERE b.limit_name = nm;
    PERFORM celeriac.limit_release_all(nm);
    PERFORM pg_notify('celeriac.limits', nm);
END
$$;

-- Remove a limit; its waiting tasks become ready.
CREATE FUNCTION celeriac.limit_remove(kind text, target text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    nm text := kind || ':' || target;
BEGIN
    PERFORM celeriac.limit_release_all(nm);
    DELETE FROM celeriac.limits WHERE name = nm;
    IF FOUND THEN
        PERFORM pg_notify('celeriac.limits', nm);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Make every task throttled on limit `nm` ready again (they are checked anew when claimed).
CREATE FUNCTION celeriac.limit_release_all(nm text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH released AS (
        UPDATE celeriac.tasks SET state = 'PENDING', throttle_key = NULL
        WHERE state = 'THROTTLED' AND throttle_key LIKE nm || '|%'
        RETURNING queue
    ), q AS (SELECT DISTINCT queue FROM released)
    SELECT (SELECT count(*) FROM released), (SELECT count(pg_notify('celeriac.wakeup', queue)) FROM q)
    INTO n;
    RETURN n;
END
$$;

-- A task leaves STARTED (success, failure, retry, rescue, hand-back, revoke): its running slots
-- go back, and for each, one task throttled on that bucket becomes ready.
CREATE FUNCTION celeriac.limit_on_stop() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    held text;
    bkey text;
    next record;
BEGIN
    FOREACH held IN ARRAY OLD.limit_held LOOP
        IF left(held, 2) = 'c:' THEN
            bkey := substr(held, 3);
            UPDATE celeriac.limit_buckets SET running = greatest(running - 1, 0) WHERE key = bkey;
            UPDATE celeriac.tasks t SET state = 'PENDING', throttle_key = NULL
            WHERE t.id = (SELECT w.id FROM celeriac.tasks w
                          WHERE w.state = 'THROTTLED' AND w.throttle_key = bkey
                          ORDER BY w.priority DESC, w.run_at, w.seq
                          LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING t.queue INTO next;
            IF FOUND THEN
                PERFORM pg_notify('celeriac.wakeup', next.queue);
            END IF;
        END IF;
    END LOOP;
    NEW.limit_held := (SELECT array_agg(h) FROM unnest(OLD.limit_held) h WHERE left(h, 2) <> 'c:');
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_limit_stop
    BEFORE UPDATE OF state ON celeriac.tasks
    FOR EACH ROW
    WHEN (OLD.state = 'STARTED' AND NEW.state <> 'STARTED' AND OLD.limit_held IS NOT NULL)
    EXECUTE FUNCTION celeriac.limit_on_stop();

-- Of `picked` (ready tasks just locked by a claim, in claim order), the ids allowed to start
-- now under their limits; the others are parked: THROTTLED when over a concurrency cap, or
-- SCHEDULED until their prepaid rate token exists.
CREATE FUNCTION celeriac.limit_admit(picked uuid[]) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    allowed  uuid[] := '{}';
    r        celeriac.tasks%ROWTYPE;
    l        record;
    b        celeriac.limit_buckets%ROWTYPE;
    bkey     text;
    part     text;
    ok       boolean;
    take_c   text[];
    take_r   text[];
    paid     text[];
    held     text[];
    wait_s   double precision;
    block    text;
BEGIN
    FOR r IN SELECT * FROM celeriac.tasks WHERE id = ANY(picked)
             ORDER BY array_position(picked, id) LOOP
        IF r.expires_at <= now() THEN
            allowed := allowed || r.id;       -- revoked by the claim, like any expired task
            CONTINUE;
        END IF;
        ok := true;
        take_c := '{}';
        take_r := '{}';
        paid := '{}';
        block := NULL;
        wait_s := 0;
        -- Check every limit of the task before taking anything (buckets locked in name order).
        FOR l IN SELECT * FROM celeriac.limits
                 WHERE (kind = 'task' AND target = r.name) OR (kind = 'queue' AND target = r.queue)
                 ORDER BY name LOOP
            part := CASE WHEN l.partition_by IS NULL THEN '' ELSE coalesce(r.kwargs->>l.partition_by, '') END;
            bkey := l.name || '|' || part;
            INSERT INTO celeriac.limit_buckets (key, limit_name, tokens, refreshed_at)
            VALUES (bkey, l.name, coalesce(l.rate_count, 0), now())
            ON CONFLICT (key) DO NOTHING;
            SELECT * INTO b FROM celeriac.limit_buckets WHERE key = bkey FOR UPDATE;
            IF l.concurrency IS NOT NULL THEN
                IF b.running >= l.concurrency THEN
                    ok := false;
                    block := bkey;
                    EXIT;
                END IF;
                take_c := take_c || bkey;
            END IF;
            IF l.rate_count IS NOT NULL THEN
                IF ('r:' || bkey) = ANY(coalesce(r.limit_held, '{}')) THEN
                    paid := paid || ('r:' || bkey);
                ELSE
                    take_r := take_r || bkey;
                END IF;
            END IF;
        END LOOP;
        IF NOT ok THEN
            -- Over a cap: wait until a running task of that bucket stops.
            UPDATE celeriac.tasks SET state = 'THROTTLED', throttle_key = block WHERE id = r.id;
            CONTINUE;
        END IF;
        -- Rates: refill, then take a token; without one, prepay the next one (the bucket goes
        -- into debt) and wait until it exists.
        held := (SELECT array_agg(h) FROM unnest(coalesce(r.limit_held, '{}')) h WHERE NOT (h = ANY(paid)));
        FOREACH bkey IN ARRAY take_r LOOP
            SELECT l2.* INTO l FROM celeriac.limits l2 WHERE l2.name = split_part(bkey, '|', 1);
            UPDATE celeriac.limit_buckets SET
                tokens = least(l.rate_count,
                               tokens + extract(epoch FROM now() - refreshed_at) * l.rate_count / l.rate_period) - 1,
                refreshed_at = now()
            WHERE key = bkey
            RETURNING tokens INTO b.tokens;
            IF b.tokens < 0 THEN
                wait_s := greatest(wait_s, -b.tokens * l.rate_period / l.rate_count);
            END IF;
        END LOOP;
        IF wait_s > 0 THEN
            -- Not now: concurrency is not taken; every token taken is kept, prepaid, for then.
            held := coalesce(held, '{}') || ARRAY(SELECT 'r:' || k FROM unnest(take_r) k
                                                  WHERE NOT ('r:' || k) = ANY(coalesce(held, '{}')));
            UPDATE celeriac.tasks SET state = 'SCHEDULED', run_at = now() + make_interval(secs => wait_s),
                                      limit_held = held
            WHERE id = r.id;
            PERFORM pg_notify('celeriac.wakeup', r.queue);
            CONTINUE;
        END IF;
        FOREACH bkey IN ARRAY take_c LOOP
            UPDATE celeriac.limit_buckets SET running = running + 1 WHERE key = bkey;
        END LOOP;
        UPDATE celeriac.tasks SET limit_held =
            CASE WHEN cardinality(take_c) > 0 OR held IS NOT NULL
                 THEN coalesce(held, '{}') || ARRAY(SELECT 'c:' || k FROM unnest(take_c) k) END
        WHERE id = r.id;
        allowed := allowed || r.id;
    END LOOP;
    RETURN allowed;
END
$$;

-- The claim: pick up to n ready tasks of `queues` (in order, paused queues skipped, highest
-- priority first and FIFO within a priority, SKIP LOCKED), and start them. When limits exist,
-- each picked task is first admitted (celeriac.limit_admit); tasks held back leave the ready
-- set, so another round reaches the tasks behind them. Returns the started rows, plus rows
-- revoked because they expired (state REVOKED), so the caller can report them.
CREATE FUNCTION celeriac.claim(queues text[], n integer, worker uuid)
RETURNS SETOF celeriac.tasks
LANGUAGE plpgsql AS $$
DECLARE
    limited boolean := EXISTS (SELECT 1 FROM celeriac.limits);
    picked  uuid[];
    allowed uuid[];
    rounds  integer := 0;
    want    integer := n;
BEGIN
    WHILE want > 0 AND rounds < 8 LOOP
        rounds := rounds + 1;
        picked := ARRAY(
            SELECT c.id
            FROM (SELECT q.name, q.ord
                  FROM unnest(queues) WITH ORDINALITY AS q(name, ord)
                  WHERE NOT EXISTS (SELECT 1 FROM celeriac.queues p WHERE p.name = q.name AND p.paused)
                 ) q
            CROSS JOIN LATERAL (
                SELECT x.id
                FROM celeriac.tasks x
                WHERE x.state = 'PENDING' AND x.queue = q.name
                ORDER BY x.priority DESC, x.run_at, x.seq
                LIMIT want
                FOR UPDATE SKIP LOCKED
            ) c
            LIMIT want);
        EXIT WHEN cardinality(picked) = 0;
        allowed := CASE WHEN limited THEN celeriac.limit_admit(picked) ELSE picked END;
        RETURN QUERY
        UPDATE celeriac.tasks t SET
            state          = CASE WHEN t.expires_at <= now() THEN 'REVOKED' ELSE 'STARTED' END,
            attempt        = t.attempt + 1,
            worker_id      = CASE WHEN t.expires_at <= now() THEN NULL ELSE worker END,
            started_at     = CASE WHEN t.expires_at <= now() THEN t.started_at ELSE now() END,
            finished_at    = CASE WHEN t.expires_at <= now() THEN now() END,
            revoked_reason = CASE WHEN t.expires_at <= now() THEN 'expired' END,
            progress_state = NULL,
            terminate      = false
        WHERE t.id = ANY(allowed)
        RETURNING t.*;
        want := want - cardinality(allowed);
        -- Everything picked was started: the queue may simply be empty now.
        EXIT WHEN cardinality(allowed) = cardinality(picked);
    END LOOP;
END
$$;

-- Safety net (run by maintenance): recount running slots from the tasks that hold them, and make
-- ready the throttled tasks whose bucket has room (e.g. after a task holding a slot was deleted).
CREATE FUNCTION celeriac.limit_reconcile() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    k record;
BEGIN
    UPDATE celeriac.limit_buckets b SET running = coalesce(
        (SELECT count(*) FROM celeriac.tasks t
         WHERE t.worker_id IS NOT NULL AND ('c:' || b.key) = ANY(t.limit_held)), 0)
    WHERE b.running <> coalesce(
        (SELECT count(*) FROM celeriac.tasks t
         WHERE t.worker_id IS NOT NULL AND ('c:' || b.key) = ANY(t.limit_held)), 0);
    FOR k IN SELECT DISTINCT t.throttle_key AS key FROM celeriac.tasks t WHERE t.state = 'THROTTLED' LOOP
        IF NOT EXISTS (SELECT 1 FROM celeriac.limit_buckets b JOIN celeriac.limits l ON l.name = b.limit_name
                       WHERE b.key = k.key AND l.concurrency IS NOT NULL AND b.running >= l.concurrency) THEN
            WITH released AS (
                UPDATE celeriac.tasks SET state = 'PENDING', throttle_key = NULL
                WHERE state = 'THROTTLED' AND throttle_key = k.key
                RETURNING queue
            ), woken AS (
                SELECT pg_notify('celeriac.wakeup', q.queue) FROM (SELECT DISTINCT queue FROM released) q
            )
            SELECT n + (SELECT count(*) FROM released) + 0 * (SELECT count(*) FROM woken) INTO n;
        END IF;
    END LOOP;

    RETURN n;
END
$$;

-- Throttled tasks are waiting tasks: revoke takes them like the others.
CREATE OR REPLACE FUNCTION celeriac.revoke(task_id uuid, terminate boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    after text;
BEGIN
    UPDATE celeriac.tasks t SET
        state = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY') THEN 'REVOKED' ELSE t.state END,
        revoked_reason = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY') THEN 'revoked'
                              ELSE t.revoked_reason END,
        finished_at = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY') THEN now()
                           ELSE t.finished_at END,
        throttle_key = NULL,
        terminate = t.terminate OR (revoke.terminate AND t.state = 'STARTED')
    WHERE t.id = revoke.task_id
    RETURNING celeriac.celery_state(t.state, t.retries, t.progress_state) INTO after;
    IF after = 'REVOKED' THEN
        PERFORM pg_notify('celeriac.done', task_id::text);
    ELSIF after IS NOT NULL AND terminate THEN
        PERFORM pg_notify('celeriac.control', 'terminate:' || task_id::text);
    END IF;
    RETURN after;
END
$$;

-- queue_stats gains `throttled`: tasks waiting for a concurrency slot.
CREATE OR REPLACE VIEW celeriac.queue_stats AS
WITH ready AS (
    SELECT queue, count(*) AS n, min(run_at) AS oldest
    FROM celeriac.tasks WHERE state = 'PENDING' GROUP BY queue
), waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS due,
           count(*) FILTER (WHERE run_at > now()) AS later,
           min(run_at) AS oldest
    FROM celeriac.tasks WHERE state IN ('SCHEDULED', 'RETRY') GROUP BY queue
), running AS (
    SELECT queue, count(*) AS n FROM celeriac.tasks WHERE worker_id IS NOT NULL GROUP BY queue
), throttled AS (
    SELECT queue, count(*) AS n FROM celeriac.tasks WHERE state = 'THROTTLED' GROUP BY queue
), consumers AS (
    SELECT q AS queue, count(*) AS n
    FROM celeriac.workers, unnest(queues) AS q WHERE expires_at > now() GROUP BY q
), names AS (
    SELECT name AS queue FROM celeriac.queues
    UNION SELECT queue FROM ready UNION SELECT queue FROM waiting
    UNION SELECT queue FROM running UNION SELECT queue FROM consumers
    UNION SELECT queue FROM throttled
)
SELECT n.queue,
       coalesce(q.paused, false)                                           AS paused,
       coalesce(r.n, 0) + coalesce(w.due, 0)                               AS ready,
       coalesce(w.later, 0)                                                AS scheduled,
       coalesce(x.n, 0)                                                    AS running,
       least(r.oldest, CASE WHEN w.due > 0 THEN w.oldest END)              AS oldest_ready_at,
       extract(epoch FROM now() - least(r.oldest, CASE WHEN w.due > 0 THEN w.oldest END))
                                                                            AS oldest_ready_age_s,
       coalesce(c.n, 0)                                                    AS workers,
       coalesce(t.n, 0)                                                    AS throttled
FROM names n
LEFT JOIN celeriac.queues q ON q.name = n.queue
LEFT JOIN ready r ON r.queue = n.queue
LEFT JOIN waiting w ON w.queue = n.queue
LEFT JOIN running x ON x.queue = n.queue
LEFT JOIN consumers c ON c.queue = n.queue
LEFT JOIN throttled t ON t.queue = n.queue;
